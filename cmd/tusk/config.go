package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
)

// newConfigCmd is `tusk config get|set topic NAME | broker ID` (kadm:
// DescribeConfigs, IncrementalAlterConfigs).
func newConfigCmd() *cobra.Command {
	cmd := groupCmd("config", "Read and change topic and broker configs (Kafka protocol; any Kafka-compatible broker)")
	o := addAdminFlags(cmd)
	cmd.AddCommand(configGetCmd(o), configSetCmd(o))
	return cmd
}

// configResource parses "topic NAME" or "broker ID".
func configResource(args []string) (kind, name string, broker int32, err error) {
	switch args[0] {
	case "topic":
		return "topic", args[1], 0, nil
	case "broker":
		id, err := strconv.ParseInt(args[1], 10, 32)
		if err != nil || id < 0 {
			return "", "", 0, usagef("broker %q: want a node id", args[1])
		}
		return "broker", args[1], int32(id), nil
	default:
		return "", "", 0, usagef("%q: want topic NAME or broker ID", args[0])
	}
}

type configEntry struct {
	Key       string  `json:"key"`
	Value     *string `json:"value"`
	Source    string  `json:"source"`
	Sensitive bool    `json:"sensitive,omitempty"`
}

func configGetCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "get (topic NAME | broker ID) [KEY...]",
		Short: "Print a topic's or broker's configs (all, or the keys named) with their source",
		Args:  usageArgs(cobra.MinimumNArgs(2)),
		RunE: func(c *cobra.Command, args []string) error {
			kind, name, broker, err := configResource(args)
			if err != nil {
				return err
			}
			keys := args[2:]
			return o.run(c, func(ctx context.Context, adm *kadm.Client) error {
				var rcs kadm.ResourceConfigs
				if kind == "topic" {
					rcs, err = adm.DescribeTopicConfigs(ctx, name)
				} else {
					rcs, err = adm.DescribeBrokerConfigs(ctx, broker)
				}
				if err != nil {
					return fmt.Errorf("describe %s %s configs: %w", kind, name, err)
				}
				rc, err := rcs.On(name, nil)
				if err != nil {
					return fmt.Errorf("describe %s %s configs: %w", kind, name, err)
				}
				if rc.Err != nil {
					return fmt.Errorf("describe %s %s configs: %s", kind, name, errMessage(rc.Err, rc.ErrMessage))
				}
				byKey := map[string]configEntry{}
				for _, cf := range rc.Configs {
					byKey[cf.Key] = configEntry{Key: cf.Key, Value: cf.Value, Source: cf.Source.String(), Sensitive: cf.Sensitive}
				}
				out := []configEntry{}
				var failed []string
				if len(keys) == 0 {
					for _, e := range byKey {
						out = append(out, e)
					}
					sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
				}
				for _, k := range keys {
					e, ok := byKey[k]
					if !ok {
						failed = append(failed, fmt.Sprintf("%s %s has no config %q", kind, name, k))
						continue
					}
					out = append(out, e)
				}
				if o.json() {
					if err := printJSON(c.OutOrStdout(), out); err != nil {
						return err
					}
				} else {
					var rows [][]string
					for _, e := range out {
						v := "(null)"
						if e.Sensitive {
							v = "(sensitive)"
						} else if e.Value != nil {
							v = *e.Value
						}
						rows = append(rows, []string{e.Key, v, e.Source})
					}
					if err := printTable(c.OutOrStdout(), []string{"KEY", "VALUE", "SOURCE"}, rows); err != nil {
						return err
					}
				}
				return itemErrors(failed)
			})
		},
	}
}

func configSetCmd(o *adminOpts) *cobra.Command {
	var del []string
	c := &cobra.Command{
		Use:   "set (topic NAME | broker ID) [KEY=VALUE...] [--delete KEY]...",
		Short: "Set (or with --delete remove) topic or broker config overrides (IncrementalAlterConfigs)",
		Args:  usageArgs(cobra.MinimumNArgs(2)),
		RunE: func(c *cobra.Command, args []string) error {
			kind, name, broker, err := configResource(args)
			if err != nil {
				return err
			}
			kv, err := parseKV(args[2:])
			if err != nil {
				return err
			}
			if len(kv) == 0 && len(del) == 0 {
				return usagef("config set: nothing to change (KEY=VALUE or --delete KEY)")
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
				var resp kadm.AlterConfigsResponses
				if kind == "topic" {
					resp, err = adm.AlterTopicConfigs(ctx, alters, name)
				} else {
					resp, err = adm.AlterBrokerConfigs(ctx, alters, broker)
				}
				if err != nil {
					return fmt.Errorf("alter %s %s configs: %w", kind, name, err)
				}
				r, err := resp.On(name, nil)
				if err != nil {
					return fmt.Errorf("alter %s %s configs: %w", kind, name, err)
				}
				res := struct {
					Resource string            `json:"resource"`
					Name     string            `json:"name"`
					Set      map[string]string `json:"set"`
					Deleted  []string          `json:"deleted"`
					Error    string            `json:"error,omitempty"`
				}{Resource: kind, Name: name, Set: kv, Deleted: del}
				if res.Deleted == nil {
					res.Deleted = []string{}
				}
				if r.Err != nil {
					res.Error = errMessage(r.Err, r.ErrMessage)
				}
				if o.json() {
					if err := printJSON(c.OutOrStdout(), res); err != nil {
						return err
					}
				} else if res.Error == "" {
					for _, k := range keys {
						fmt.Fprintf(c.OutOrStdout(), "%s %s: set %s=%s\n", kind, name, k, kv[k])
					}
					for _, k := range del {
						fmt.Fprintf(c.OutOrStdout(), "%s %s: deleted %s\n", kind, name, k)
					}
				}
				if res.Error != "" {
					return fmt.Errorf("alter %s %s configs: %s", kind, name, res.Error)
				}
				return nil
			})
		},
	}
	c.Flags().StringArrayVar(&del, "delete", nil, "config override to remove, back to the default (repeatable)")
	return c
}
