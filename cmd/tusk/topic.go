package main

import (
	"context"
	"fmt"
	"sort"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// newTopicCmd is `tusk topic create|list|describe|alter|delete` (kadm).
func newTopicCmd() *cobra.Command {
	cmd := groupCmd("topic", "Create, list, describe, alter and delete topics (Kafka protocol; any Kafka-compatible broker)")
	o := addAdminFlags(cmd)
	cmd.AddCommand(topicCreateCmd(o), topicListCmd(o), topicDescribeCmd(o), topicAlterCmd(o), topicDeleteCmd(o))
	return cmd
}

type topicCreated struct {
	Topic             string `json:"topic"`
	ID                string `json:"id,omitempty"`
	Partitions        int32  `json:"partitions"`
	ReplicationFactor int16  `json:"replication_factor"`
	Error             string `json:"error,omitempty"`
}

func topicCreateCmd(o *adminOpts) *cobra.Command {
	var partitions int32
	var rf int16
	var configs []string
	c := &cobra.Command{
		Use:   "create TOPIC...",
		Short: "Create topics",
		Args:  usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(c *cobra.Command, topics []string) error {
			kv, err := parseKV(configs)
			if err != nil {
				return err
			}
			cfg := map[string]*string{}
			for k, v := range kv {
				cfg[k] = &v
			}
			return o.run(c, func(ctx context.Context, adm *kadm.Client) error {
				resp, err := adm.CreateTopics(ctx, partitions, rf, cfg, topics...)
				if err != nil {
					return fmt.Errorf("create topics: %w", err)
				}
				var out []topicCreated
				var failed []string
				for _, r := range resp.Sorted() {
					tc := topicCreated{Topic: r.Topic, Partitions: r.NumPartitions, ReplicationFactor: r.ReplicationFactor}
					if r.Err != nil {
						tc.Error = errMessage(r.Err, r.ErrMessage)
						failed = append(failed, r.Topic+": "+tc.Error)
					} else {
						tc.ID = topicIDString(r.ID)
					}
					out = append(out, tc)
				}
				if o.json() {
					if err := printJSON(c.OutOrStdout(), out); err != nil {
						return err
					}
				} else {
					var rows [][]string
					for _, t := range out {
						rows = append(rows, []string{t.Topic, t.ID, fmt.Sprint(t.Partitions), fmt.Sprint(t.ReplicationFactor), t.Error})
					}
					if err := printTable(c.OutOrStdout(), []string{"TOPIC", "ID", "PARTITIONS", "RF", "ERROR"}, rows); err != nil {
						return err
					}
				}
				return itemErrors(failed)
			})
		},
	}
	c.Flags().Int32VarP(&partitions, "partitions", "p", -1, "partitions (-1: the broker's default)")
	c.Flags().Int16VarP(&rf, "replication-factor", "r", -1, "replication factor (-1: the broker's default)")
	c.Flags().StringArrayVarP(&configs, "config", "c", nil, "topic config key=value (repeatable)")
	return c
}

// errMessage is a Kafka error with the broker's message, if any.
func errMessage(err error, msg string) string {
	if msg != "" && msg != err.Error() {
		return err.Error() + ": " + msg
	}
	return err.Error()
}

type topicListed struct {
	Topic             string `json:"topic"`
	ID                string `json:"id"`
	Partitions        int    `json:"partitions"`
	ReplicationFactor int    `json:"replication_factor"`
	Internal          bool   `json:"internal"`
}

func topicListCmd(o *adminOpts) *cobra.Command {
	var internal bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List topics",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			return o.run(c, func(ctx context.Context, adm *kadm.Client) error {
				list := adm.ListTopics
				if internal {
					list = adm.ListTopicsWithInternal
				}
				tds, err := list(ctx)
				if err != nil {
					return fmt.Errorf("list topics: %w", err)
				}
				out := []topicListed{}
				for _, td := range tds.Sorted() {
					out = append(out, topicListed{Topic: td.Topic, ID: topicIDString(td.ID), Partitions: len(td.Partitions),
						ReplicationFactor: td.Partitions.NumReplicas(), Internal: td.IsInternal})
				}
				if o.json() {
					return printJSON(c.OutOrStdout(), out)
				}
				var rows [][]string
				for _, t := range out {
					rows = append(rows, []string{t.Topic, fmt.Sprint(t.Partitions), fmt.Sprint(t.ReplicationFactor), fmt.Sprint(t.Internal), t.ID})
				}
				return printTable(c.OutOrStdout(), []string{"TOPIC", "PARTITIONS", "RF", "INTERNAL", "ID"}, rows)
			})
		},
	}
	c.Flags().BoolVar(&internal, "internal", false, "include internal topics (__consumer_offsets)")
	return c
}

type topicDescribed struct {
	Topic      string               `json:"topic"`
	ID         string               `json:"id,omitempty"`
	Internal   bool                 `json:"internal"`
	Partitions []partitionDescribed `json:"partitions"`
	// Configs are the topic's overrides (DescribeConfigs entries whose
	// source is the topic).
	Configs map[string]string `json:"configs"`
	Error   string            `json:"error,omitempty"`
}

type partitionDescribed struct {
	Partition   int32   `json:"partition"`
	Leader      int32   `json:"leader"`
	LeaderEpoch int32   `json:"leader_epoch"`
	Replicas    []int32 `json:"replicas"`
	ISR         []int32 `json:"isr"`
	LogStart    int64   `json:"log_start"`
	LogEnd      int64   `json:"log_end"`
	Error       string  `json:"error,omitempty"`
}

func topicDescribeCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "describe TOPIC...",
		Short: "Describe topics: partitions (leader, epoch, replicas, ISR, start and end offsets) and config overrides",
		Args:  usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(c *cobra.Command, topics []string) error {
			return o.run(c, func(ctx context.Context, adm *kadm.Client) error {
				tds, err := adm.ListTopicsWithInternal(ctx, topics...)
				if err != nil {
					return fmt.Errorf("describe topics: %w", err)
				}
				var known []string
				for _, t := range topics {
					if td, ok := tds[t]; ok && td.Err == nil {
						known = append(known, t)
					}
				}
				starts, ends := kadm.ListedOffsets{}, kadm.ListedOffsets{}
				cfgs := map[string]map[string]string{}
				if len(known) > 0 {
					if starts, err = adm.ListStartOffsets(ctx, known...); err != nil {
						return fmt.Errorf("list start offsets: %w", err)
					}
					if ends, err = adm.ListEndOffsets(ctx, known...); err != nil {
						return fmt.Errorf("list end offsets: %w", err)
					}
					rcs, err := adm.DescribeTopicConfigs(ctx, known...)
					if err != nil {
						return fmt.Errorf("describe topic configs: %w", err)
					}
					for _, rc := range rcs {
						m := map[string]string{}
						for _, cf := range rc.Configs {
							if cf.Source == kmsg.ConfigSourceDynamicTopicConfig && cf.Value != nil {
								m[cf.Key] = *cf.Value
							}
						}
						cfgs[rc.Name] = m
					}
				}
				var out []topicDescribed
				var failed []string
				for _, t := range topics {
					td, ok := tds[t]
					d := topicDescribed{Topic: t, Partitions: []partitionDescribed{}, Configs: map[string]string{}}
					if !ok || td.Err != nil {
						d.Error = "UNKNOWN_TOPIC_OR_PARTITION"
						if ok {
							d.Error = td.Err.Error()
						}
						failed = append(failed, t+": "+d.Error)
						out = append(out, d)
						continue
					}
					d.ID, d.Internal = topicIDString(td.ID), td.IsInternal
					if cfgs[t] != nil {
						d.Configs = cfgs[t]
					}
					for _, p := range td.Partitions.Sorted() {
						pd := partitionDescribed{Partition: p.Partition, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch, Replicas: p.Replicas, ISR: p.ISR,
							LogStart: -1, LogEnd: -1}
						if p.Err != nil {
							pd.Error = p.Err.Error()
						}
						if s, ok := starts.Lookup(t, p.Partition); ok && s.Err == nil {
							pd.LogStart = s.Offset
						}
						if e, ok := ends.Lookup(t, p.Partition); ok && e.Err == nil {
							pd.LogEnd = e.Offset
						}
						d.Partitions = append(d.Partitions, pd)
					}
					out = append(out, d)
				}
				if o.json() {
					if err := printJSON(c.OutOrStdout(), out); err != nil {
						return err
					}
					return itemErrors(failed)
				}
				w := c.OutOrStdout()
				for i, d := range out {
					if i > 0 {
						fmt.Fprintln(w)
					}
					if d.Error != "" {
						fmt.Fprintf(w, "topic %s: %s\n", d.Topic, d.Error)
						continue
					}
					fmt.Fprintf(w, "topic %s  id %s  partitions %d  internal %v\n", d.Topic, d.ID, len(d.Partitions), d.Internal)
					var rows [][]string
					for _, p := range d.Partitions {
						rows = append(rows, []string{fmt.Sprint(p.Partition), fmt.Sprint(p.Leader), fmt.Sprint(p.LeaderEpoch), ints32(p.Replicas), ints32(p.ISR),
							fmt.Sprint(p.LogStart), fmt.Sprint(p.LogEnd), p.Error})
					}
					if err := printTable(w, []string{"PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "LOG-START", "LOG-END", "ERROR"}, rows); err != nil {
						return err
					}
					keys := make([]string, 0, len(d.Configs))
					for k := range d.Configs {
						keys = append(keys, k)
					}
					sort.Strings(keys)
					for _, k := range keys {
						fmt.Fprintf(w, "config %s=%s\n", k, d.Configs[k])
					}
				}
				return itemErrors(failed)
			})
		},
	}
}

type topicAltered struct {
	Topic  string `json:"topic"`
	Change string `json:"change"`
	Error  string `json:"error,omitempty"`
}

func topicAlterCmd(o *adminOpts) *cobra.Command {
	var partitions int
	var set, del []string
	c := &cobra.Command{
		Use:   "alter TOPIC...",
		Short: "Raise the partition count (--partitions) and set or delete config overrides (--set, --delete)",
		Args:  usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(c *cobra.Command, topics []string) error {
			kv, err := parseKV(set)
			if err != nil {
				return err
			}
			if partitions < 0 && len(kv) == 0 && len(del) == 0 {
				return usagef("topic alter: nothing to change (--partitions, --set or --delete)")
			}
			var alters []kadm.AlterConfig
			keys := make([]string, 0, len(kv))
			for k := range kv {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				v := kv[k]
				alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: &v})
			}
			for _, k := range del {
				alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
			}
			return o.run(c, func(ctx context.Context, adm *kadm.Client) error {
				var out []topicAltered
				var failed []string
				if partitions >= 0 {
					resp, err := adm.UpdatePartitions(ctx, partitions, topics...)
					if err != nil {
						return fmt.Errorf("update partitions: %w", err)
					}
					for _, r := range resp.Sorted() {
						a := topicAltered{Topic: r.Topic, Change: fmt.Sprintf("partitions=%d", partitions)}
						if r.Err != nil {
							a.Error = errMessage(r.Err, r.ErrMessage)
							failed = append(failed, r.Topic+": "+a.Error)
						}
						out = append(out, a)
					}
				}
				if len(alters) > 0 {
					resp, err := adm.AlterTopicConfigs(ctx, alters, topics...)
					if err != nil {
						return fmt.Errorf("alter topic configs: %w", err)
					}
					change := ""
					for _, a := range alters {
						if change != "" {
							change += " "
						}
						if a.Op == kadm.DeleteConfig {
							change += "-" + a.Name
						} else {
							change += a.Name + "=" + *a.Value
						}
					}
					for _, r := range resp {
						a := topicAltered{Topic: r.Name, Change: change}
						if r.Err != nil {
							a.Error = errMessage(r.Err, r.ErrMessage)
							failed = append(failed, r.Name+": "+a.Error)
						}
						out = append(out, a)
					}
				}
				if err := printAltered(c, o, out); err != nil {
					return err
				}
				return itemErrors(failed)
			})
		},
	}
	c.Flags().IntVarP(&partitions, "partitions", "p", -1, "new total partition count (only grows)")
	c.Flags().StringArrayVar(&set, "set", nil, "config override key=value to set (repeatable)")
	c.Flags().StringArrayVar(&del, "delete", nil, "config override key to delete, back to the default (repeatable)")
	return c
}

func printAltered(c *cobra.Command, o *adminOpts, out []topicAltered) error {
	if out == nil {
		out = []topicAltered{}
	}
	if o.json() {
		return printJSON(c.OutOrStdout(), out)
	}
	var rows [][]string
	for _, a := range out {
		status := "ok"
		if a.Error != "" {
			status = a.Error
		}
		rows = append(rows, []string{a.Topic, a.Change, status})
	}
	return printTable(c.OutOrStdout(), []string{"TOPIC", "CHANGE", "RESULT"}, rows)
}

func topicDeleteCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "delete TOPIC...",
		Short: "Delete topics",
		Args:  usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(c *cobra.Command, topics []string) error {
			return o.run(c, func(ctx context.Context, adm *kadm.Client) error {
				resp, err := adm.DeleteTopics(ctx, topics...)
				if err != nil {
					return fmt.Errorf("delete topics: %w", err)
				}
				var out []topicAltered
				var failed []string
				for _, r := range resp.Sorted() {
					a := topicAltered{Topic: r.Topic, Change: "deleted"}
					if r.Err != nil {
						a.Error = errMessage(r.Err, r.ErrMessage)
						failed = append(failed, r.Topic+": "+a.Error)
					}
					out = append(out, a)
				}
				if err := printAltered(c, o, out); err != nil {
					return err
				}
				return itemErrors(failed)
			})
		},
	}
}
