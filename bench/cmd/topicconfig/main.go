// Command topicconfig creates a topic or alters its configs, for the
// benchmark scripts (bench/bgio.sh):
//
//	topicconfig -brokers ADDR -topic T [-create N | -assign 1,2;3,1] [-set k=v,k=v]
//
// With -create N it creates T with N partitions (replication factor -1:
// the broker's default) and the -set configs; with -assign it creates T
// with one partition per ';'-separated list of replica node ids;
// otherwise it sets the configs on the existing topic
// (IncrementalAlterConfigs).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "topicconfig:", err)
		os.Exit(1)
	}
}

func run() error {
	brokers := flag.String("brokers", "127.0.0.1:9092", "seed brokers, comma separated")
	topic := flag.String("topic", "", "topic")
	create := flag.Int("create", 0, "create the topic with this many partitions")
	set := flag.String("set", "", "configs as k=v,k=v")
	assign := flag.String("assign", "", "create the topic with these replicas: node ids, partitions separated by ';'")
	flag.Parse()
	if *topic == "" {
		return errors.New("-topic is required")
	}
	configs := map[string]*string{}
	if *set != "" {
		for _, kv := range strings.Split(*set, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("-set %q: want k=v", kv)
			}
			configs[k] = &v
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(*brokers, ",")...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if *assign != "" {
		return createAssigned(ctx, cl, *topic, *assign, configs)
	}
	if *create > 0 {
		res, err := adm.CreateTopic(ctx, int32(*create), -1, configs, *topic)
		if err != nil {
			return fmt.Errorf("create %s: %w", *topic, err)
		}
		if res.Err != nil {
			return fmt.Errorf("create %s: %w", *topic, res.Err)
		}
		return nil
	}
	var alters []kadm.AlterConfig
	for k, v := range configs {
		alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: v})
	}
	rs, err := adm.AlterTopicConfigs(ctx, alters, *topic)
	if err != nil {
		return fmt.Errorf("alter %s: %w", *topic, err)
	}
	for _, r := range rs {
		if r.Err != nil {
			return fmt.Errorf("alter %s: %w", r.Name, r.Err)
		}
	}
	return nil
}

// createAssigned creates topic with explicit replica assignments.
func createAssigned(ctx context.Context, cl *kgo.Client, topic, assign string, configs map[string]*string) error {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 30000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, -1, -1
	for i, part := range strings.Split(assign, ";") {
		a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
		a.Partition = int32(i)
		for _, id := range strings.Split(part, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(id), 10, 32)
			if err != nil {
				return fmt.Errorf("-assign %q: %w", assign, err)
			}
			a.Replicas = append(a.Replicas, int32(n))
		}
		rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
	}
	for k, v := range configs {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = k, v
		rt.Configs = append(rt.Configs, c)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("create %s: %w", topic, err)
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			msg := ""
			if t.ErrorMessage != nil {
				msg = *t.ErrorMessage
			}
			return fmt.Errorf("create %s: %w %s", topic, err, msg)
		}
	}
	return nil
}
