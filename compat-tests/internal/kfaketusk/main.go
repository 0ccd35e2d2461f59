// Command kfaketusk is a stand-in for the tusk binary that is used only to
// validate the compat test suite itself (TUSK_COMPAT_KFAKE=1). It implements
// the `tusk serve` command-line contract (flags, TUSK_* environment
// variables, ready file, /healthz, SIGTERM → exit 0) on top of franz-go's
// in-process fake cluster, kfake. It is not a Kafka broker and is never used
// to judge tusk; scenarios that depend on exact tusk behaviour (bad input,
// error codes) may legitimately fail against it.
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "serve" {
		fmt.Fprintln(os.Stderr, "usage: kfaketusk serve [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	env := func(key, def string) string {
		if v, ok := os.LookupEnv("TUSK_" + key); ok {
			return v
		}
		return def
	}
	dataDir := fs.String("data-dir", env("DATA_DIR", "./tusk-data"), "")
	kafkaListen := fs.String("kafka-listen", env("KAFKA_LISTEN", "127.0.0.1:9092"), "")
	httpListen := fs.String("http-listen", env("HTTP_LISTEN", "127.0.0.1:0"), "")
	readyFile := fs.String("ready-file", env("READY_FILE", ""), "")
	fsync := fs.String("storage-fsync", env("STORAGE_FSYNC", "always"), "")
	parts := fs.Int("topic-partitions", atoi(env("TOPIC_PARTITIONS", "1")), "")
	msgMax := fs.Int("kafka-message-max-bytes", atoi(env("KAFKA_MESSAGE_MAX_BYTES", "1048588")), "")
	_ = fs.Int("kafka-request-max-bytes", atoi(env("KAFKA_REQUEST_MAX_BYTES", "104857600")), "")
	_ = fs.String("log-level", env("LOG_LEVEL", "info"), "")
	// --null-produce answers every Produce with success and stores
	// nothing: the benchmark's ceiling (what the client and the network
	// cost without any broker work), bench/compare.sh's "null broker".
	nullProduce := fs.Bool("null-produce", false, "")
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}

	_, portStr, err := net.SplitHostPort(*kafkaListen)
	die(err)
	port, err := strconv.Atoi(portStr)
	die(err)
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.DataDir(filepath.Join(*dataDir, "kfake")),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(*parts),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(*msgMax)}),
	}
	if strings.EqualFold(*fsync, "always") {
		opts = append(opts, kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	die(err)
	if *nullProduce {
		nullProducer(c)
	}

	hl, err := net.Listen("tcp", *httpListen)
	die(err)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	go func() { _ = http.Serve(hl, mux) }()

	if *readyFile != "" {
		b, _ := json.Marshal(map[string]any{"node_id": 0, // kfake numbers nodes from 0
			"kafka": c.ListenAddrs()[0], "http": hl.Addr().String()})
		tmp := *readyFile + ".tmp"
		die(os.WriteFile(tmp, b, 0o644))
		die(os.Rename(tmp, *readyFile))
	}
	fmt.Fprintf(os.Stderr, "kfaketusk serving kafka=%s http=%s\n", c.ListenAddrs()[0], hl.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	c.Close()
	fmt.Fprintln(os.Stderr, "kfaketusk stopped")
}

// nullProducer makes c answer Produce requests itself: every partition
// gets the next offsets of a per-partition counter, nothing is stored.
func nullProducer(c *kfake.Cluster) {
	var mu sync.Mutex
	next := map[string]map[int32]int64{}
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		mu.Lock()
		defer mu.Unlock()
		for _, t := range req.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			if next[t.Topic] == nil {
				next[t.Topic] = map[int32]int64{}
			}
			for _, p := range t.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition = p.Partition
				rp.BaseOffset = next[t.Topic][p.Partition]
				n := int64(1)
				if len(p.Records) >= 61 { // the batch header's record count
					n = int64(binary.BigEndian.Uint32(p.Records[57:61]))
				}
				next[t.Topic][p.Partition] += n
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		if req.Acks == 0 {
			return nil, nil, true
		}
		return resp, nil, true
	})
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	die(err)
	return n
}

func die(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "kfaketusk:", err)
		os.Exit(1)
	}
}
