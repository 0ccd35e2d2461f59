package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/tuskdb/tusk/console"
	"github.com/tuskdb/tusk/console/groupinfo"
)

// newGroupCmd is `tusk group list|describe|delete|reset-offsets` (kadm).
func newGroupCmd() *cobra.Command {
	cmd := groupCmd("group", "List, describe, delete consumer groups and reset their offsets (Kafka protocol; any Kafka-compatible broker)")
	o := addAdminFlags(cmd)
	cmd.AddCommand(groupListCmd(o), groupDescribeCmd(o), groupDeleteCmd(o), groupResetCmd(o))
	return cmd
}

type groupListed struct {
	Group        string `json:"group"`
	Type         string `json:"type"` // classic, consumer (KIP-848), share (KIP-932)
	State        string `json:"state"`
	ProtocolType string `json:"protocol_type"`
	Coordinator  int32  `json:"coordinator"`
}

func groupListCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List groups of every type (classic, consumer, share) with their state",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			return o.run(c, func(ctx context.Context, adm *kadm.Client) error {
				gs, err := groupinfo.List(ctx, adm)
				if err != nil {
					return fmt.Errorf("list groups: %w", err)
				}
				out := []groupListed{}
				for _, g := range gs {
					out = append(out, groupListed{Group: g.Group, Type: g.Type, State: g.State, ProtocolType: g.ProtocolType, Coordinator: g.Coordinator})
				}
				if o.json() {
					return printJSON(c.OutOrStdout(), out)
				}
				var rows [][]string
				for _, g := range out {
					rows = append(rows, []string{g.Group, g.Type, g.State, g.ProtocolType, fmt.Sprint(g.Coordinator)})
				}
				return printTable(c.OutOrStdout(), []string{"GROUP", "TYPE", "STATE", "PROTOCOL-TYPE", "COORDINATOR"}, rows)
			})
		},
	}
}

// groupDescribed is one group of `tusk group describe`. Type, the
// epochs and the assignor are those of ConsumerGroupDescribe and
// ShareGroupDescribe (epochs and assignor are left out for a classic
// group, protocol type and protocol are empty for the others).
type groupDescribed struct {
	Group           string         `json:"group"`
	Type            string         `json:"type,omitempty"` // classic, consumer, share
	State           string         `json:"state"`
	ProtocolType    string         `json:"protocol_type"`
	Protocol        string         `json:"protocol"`
	GroupEpoch      int32          `json:"group_epoch,omitempty"`
	AssignmentEpoch int32          `json:"assignment_epoch,omitempty"`
	Assignor        string         `json:"assignor,omitempty"`
	Coordinator     int32          `json:"coordinator"`
	Members         []groupMember  `json:"members"`
	Lag             []partitionLag `json:"lag"`
	TotalLag        int64          `json:"total_lag"`
	Error           string         `json:"error,omitempty"`
}

type groupMember struct {
	MemberID   string             `json:"member_id"`
	InstanceID string             `json:"instance_id,omitempty"`
	ClientID   string             `json:"client_id"`
	Host       string             `json:"host"`
	Assigned   map[string][]int32 `json:"assigned"`
	// Consumer and share groups: the member's epoch, rack, subscription,
	// and (consumer groups, while it reconciles) its target assignment.
	MemberEpoch      int32              `json:"member_epoch,omitempty"`
	Rack             string             `json:"rack,omitempty"`
	SubscribedTopics []string           `json:"subscribed_topics,omitempty"`
	SubscribedRegex  string             `json:"subscribed_regex,omitempty"`
	Target           map[string][]int32 `json:"target,omitempty"`
}

type partitionLag struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed int64  `json:"committed"` // -1: none; a share group's share-partition start offset
	End       int64  `json:"end"`
	Lag       int64  `json:"lag"` // -1: unknown
	MemberID  string `json:"member_id,omitempty"`
	Error     string `json:"error,omitempty"`
}

func groupDescribeCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "describe GROUP...",
		Short: "Describe groups of every type: state, members and their assignments, committed (share groups: share-partition start) offset, end offset and lag per partition",
		Args:  usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(c *cobra.Command, groups []string) error {
			return o.run(c, func(ctx context.Context, adm *kadm.Client) error {
				var out []groupDescribed
				var failed []string
				for _, id := range groups {
					d := groupDescribed{Group: id, Members: []groupMember{}, Lag: []partitionLag{}}
					g, err := groupinfo.Describe(ctx, adm, id)
					switch {
					case errors.Is(err, console.ErrNotFound):
						d.Error = "GROUP_ID_NOT_FOUND: no such group"
					case err != nil:
						d.Error = err.Error()
					default:
						d = describedFrom(g)
					}
					if d.Error != "" {
						failed = append(failed, id+": "+d.Error)
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
						fmt.Fprintf(w, "group %s: %s\n", d.Group, d.Error)
						continue
					}
					if d.Type == console.GroupClassic {
						fmt.Fprintf(w, "group %s  type %s  state %s  protocol %s/%s  coordinator %d  members %d  total lag %d\n",
							d.Group, d.Type, d.State, d.ProtocolType, d.Protocol, d.Coordinator, len(d.Members), d.TotalLag)
					} else {
						fmt.Fprintf(w, "group %s  type %s  state %s  epoch %d  assignor %s  coordinator %d  members %d  total lag %d\n",
							d.Group, d.Type, d.State, d.GroupEpoch, d.Assignor, d.Coordinator, len(d.Members), d.TotalLag)
					}
					if d.Error != "" {
						fmt.Fprintf(w, "error: %s\n", d.Error)
					}
					var rows [][]string
					for _, p := range d.Lag {
						rows = append(rows, []string{p.Topic, fmt.Sprint(p.Partition), offsetString(p.Committed), fmt.Sprint(p.End), offsetString(p.Lag), p.MemberID, p.Error})
					}
					committed := "COMMITTED"
					if d.Type == console.GroupShare {
						committed = "SHARE-START"
					}
					if err := printTable(w, []string{"TOPIC", "PARTITION", committed, "END", "LAG", "MEMBER", "ERROR"}, rows); err != nil {
						return err
					}
					for _, m := range d.Members {
						line := fmt.Sprintf("member %s  client %s  host %s", m.MemberID, m.ClientID, m.Host)
						if d.Type != console.GroupClassic {
							line += fmt.Sprintf("  epoch %d", m.MemberEpoch)
						}
						line += "  assigned " + topicParts(m.Assigned)
						if m.Target != nil {
							line += "  target " + topicParts(m.Target)
						}
						fmt.Fprintln(w, line)
					}
				}
				return itemErrors(failed)
			})
		},
	}
}

// describedFrom is the CLI's shape of a described group.
func describedFrom(g console.Group) groupDescribed {
	d := groupDescribed{Group: g.Group, Type: g.Type, State: g.State, ProtocolType: g.ProtocolType, Protocol: g.Protocol,
		GroupEpoch: g.GroupEpoch, AssignmentEpoch: g.AssignmentEpoch, Assignor: g.Assignor, Coordinator: g.Coordinator,
		Members: []groupMember{}, Lag: []partitionLag{}, TotalLag: g.TotalLag, Error: g.Error}
	for _, m := range g.Members {
		gm := groupMember{MemberID: m.MemberID, InstanceID: m.InstanceID, ClientID: m.ClientID, Host: m.Host,
			Assigned: topicMap(m.Assignments), MemberEpoch: m.MemberEpoch, Rack: m.Rack, SubscribedTopics: m.SubscribedTopics,
			SubscribedRegex: m.SubscribedRegex}
		if m.TargetAssignments != nil {
			gm.Target = topicMap(m.TargetAssignments)
		}
		d.Members = append(d.Members, gm)
	}
	for _, l := range g.Lag {
		d.Lag = append(d.Lag, partitionLag{Topic: l.Topic, Partition: l.Partition, Committed: l.Committed, End: l.End, Lag: l.Lag,
			MemberID: l.MemberID, Error: l.Error})
	}
	return d
}

func topicMap(as []console.Assignment) map[string][]int32 {
	out := map[string][]int32{}
	for _, a := range as {
		out[a.Topic] = a.Partitions
	}
	return out
}

// topicParts prints topic:p,p ... sorted by topic.
func topicParts(m map[string][]int32) string {
	var as []string
	for t, ps := range m {
		as = append(as, t+":"+ints32(ps))
	}
	sort.Strings(as)
	return strings.Join(as, " ")
}

func offsetString(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

func groupDeleteCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "delete GROUP...",
		Short: "Delete groups (only empty ones: NON_EMPTY_GROUP otherwise)",
		Args:  usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(c *cobra.Command, groups []string) error {
			return o.run(c, func(ctx context.Context, adm *kadm.Client) error {
				resp, err := adm.DeleteGroups(ctx, groups...)
				if err != nil {
					return fmt.Errorf("delete groups: %w", err)
				}
				var out []groupResult
				var failed []string
				for _, r := range resp.Sorted() {
					gr := groupResult{Group: r.Group, Result: "deleted"}
					if r.Err != nil {
						gr.Result, gr.Error = "", r.Err.Error()
						failed = append(failed, r.Group+": "+gr.Error)
					}
					out = append(out, gr)
				}
				if o.json() {
					if err := printJSON(c.OutOrStdout(), out); err != nil {
						return err
					}
				} else {
					var rows [][]string
					for _, g := range out {
						rows = append(rows, []string{g.Group, g.Result + g.Error})
					}
					if err := printTable(c.OutOrStdout(), []string{"GROUP", "RESULT"}, rows); err != nil {
						return err
					}
				}
				return itemErrors(failed)
			})
		},
	}
}

type groupResult struct {
	Group  string `json:"group"`
	Result string `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
}

type offsetReset struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Current   int64  `json:"current"` // -1: no commit
	New       int64  `json:"new"`
	Error     string `json:"error,omitempty"`
}

type resetResult struct {
	Group   string        `json:"group"`
	DryRun  bool          `json:"dry_run"`
	Offsets []offsetReset `json:"offsets"`
}

// parseTopicSpec parses TOPIC or TOPIC:P,P,...
func parseTopicSpec(s string) (string, []int32, error) {
	t, ps, ok := strings.Cut(s, ":")
	if t == "" {
		return "", nil, usagef("--topic %q: no topic name", s)
	}
	if !ok {
		return t, nil, nil
	}
	var out []int32
	for _, p := range strings.Split(ps, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(p), 10, 32)
		if err != nil || n < 0 {
			return "", nil, usagef("--topic %q: partition %q is not a number", s, p)
		}
		out = append(out, int32(n))
	}
	return t, out, nil
}

func groupResetCmd(o *adminOpts) *cobra.Command {
	var topics []string
	var allTopics, earliest, latest, dryRun bool
	var datetime string
	var shiftBy int64
	c := &cobra.Command{
		Use:   "reset-offsets GROUP",
		Short: "Reset an inactive group's committed offsets (--to-earliest, --to-latest, --to-datetime or --shift-by; --dry-run shows without committing)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, args []string) error {
			group := args[0]
			modes := 0
			for _, on := range []bool{earliest, latest, datetime != "", c.Flags().Changed("shift-by")} {
				if on {
					modes++
				}
			}
			if modes != 1 {
				return usagef("group reset-offsets: give exactly one of --to-earliest, --to-latest, --to-datetime, --shift-by")
			}
			if allTopics == (len(topics) > 0) {
				return usagef("group reset-offsets: give --topic (repeatable) or --all-topics")
			}
			var at time.Time
			if datetime != "" {
				var err error
				if at, err = time.Parse(time.RFC3339Nano, datetime); err != nil {
					return usagef("--to-datetime %q: want RFC 3339, e.g. 2026-12-03T10:00:00Z: %v", datetime, err)
				}
			}
			want := map[string][]int32{} // topic → partitions (nil: all)
			for _, s := range topics {
				t, ps, err := parseTopicSpec(s)
				if err != nil {
					return err
				}
				want[t] = append(want[t], ps...)
				if ps == nil {
					want[t] = nil
				}
			}
			return o.run(c, func(ctx context.Context, adm *kadm.Client) error {
				current, err := adm.FetchOffsets(ctx, group)
				if err != nil {
					return fmt.Errorf("fetch offsets of %s: %w", group, err)
				}
				if allTopics { // the partitions with a commit, as Kafka's tool does
					current.Each(func(or kadm.OffsetResponse) {
						if or.Err == nil {
							want[or.Topic] = append(want[or.Topic], or.Partition)
						}
					})
				}
				var names []string
				for t := range want {
					names = append(names, t)
				}
				sort.Strings(names)
				if len(names) == 0 {
					return fmt.Errorf("group reset-offsets: group %s has no committed offsets (use --topic)", group)
				}
				tds, err := adm.ListTopics(ctx, names...)
				if err != nil {
					return fmt.Errorf("describe topics: %w", err)
				}
				starts, err := adm.ListStartOffsets(ctx, names...)
				if err != nil {
					return fmt.Errorf("list start offsets: %w", err)
				}
				ends, err := adm.ListEndOffsets(ctx, names...)
				if err != nil {
					return fmt.Errorf("list end offsets: %w", err)
				}
				var times kadm.ListedOffsets
				if datetime != "" {
					if times, err = adm.ListOffsetsAfterMilli(ctx, at.UnixMilli(), names...); err != nil {
						return fmt.Errorf("list offsets at %s: %w", datetime, err)
					}
				}
				res := resetResult{Group: group, DryRun: dryRun, Offsets: []offsetReset{}}
				commit := kadm.Offsets{}
				var failed []string
				for _, t := range names {
					td, ok := tds[t]
					if !ok || td.Err != nil {
						failed = append(failed, t+": unknown topic")
						continue
					}
					ps := want[t]
					sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
					if ps == nil {
						ps = td.Partitions.Numbers()
						sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
					}
					for _, p := range ps {
						r := offsetReset{Topic: t, Partition: p, Current: -1, New: -1}
						if cur, ok := current.Lookup(t, p); ok && cur.Err == nil {
							r.Current = cur.At
						}
						start, sok := starts.Lookup(t, p)
						end, eok := ends.Lookup(t, p)
						switch {
						case !sok || !eok:
							r.Error = "no such partition"
						case start.Err != nil || end.Err != nil:
							r.Error = errString(start.Err) + errString(end.Err)
						case earliest:
							r.New = start.Offset
						case latest:
							r.New = end.Offset
						case datetime != "":
							// The first offset at or after the time; none: the end.
							r.New = end.Offset
							if lo, ok := times.Lookup(t, p); ok && lo.Err == nil && lo.Offset >= 0 {
								r.New = lo.Offset
							}
						default: // shift-by
							if r.Current < 0 {
								r.Error = "no committed offset to shift"
							} else {
								r.New = min(max(r.Current+shiftBy, start.Offset), end.Offset)
							}
						}
						if r.Error != "" {
							failed = append(failed, fmt.Sprintf("%s/%d: %s", t, p, r.Error))
						} else {
							commit.Add(kadm.Offset{Topic: t, Partition: p, At: r.New, LeaderEpoch: -1})
						}
						res.Offsets = append(res.Offsets, r)
					}
				}
				if !dryRun && len(failed) == 0 && len(commit) > 0 {
					resp, err := adm.CommitOffsets(ctx, group, commit)
					if err != nil {
						return fmt.Errorf("commit offsets of %s: %w", group, err)
					}
					for i, r := range res.Offsets {
						if or, ok := resp.Lookup(r.Topic, r.Partition); ok && or.Err != nil {
							res.Offsets[i].Error = or.Err.Error()
							failed = append(failed, fmt.Sprintf("%s/%d: %v", r.Topic, r.Partition, or.Err))
						}
					}
				}
				if o.json() {
					if err := printJSON(c.OutOrStdout(), res); err != nil {
						return err
					}
				} else {
					var rows [][]string
					for _, r := range res.Offsets {
						rows = append(rows, []string{r.Topic, fmt.Sprint(r.Partition), offsetString(r.Current), offsetString(r.New), r.Error})
					}
					if err := printTable(c.OutOrStdout(), []string{"TOPIC", "PARTITION", "CURRENT", "NEW", "ERROR"}, rows); err != nil {
						return err
					}
					if dryRun {
						fmt.Fprintln(c.OutOrStdout(), "dry run: nothing committed")
					} else if len(failed) > 0 {
						fmt.Fprintln(c.OutOrStdout(), "nothing committed")
					}
				}
				return itemErrors(failed)
			})
		},
	}
	c.Flags().StringArrayVar(&topics, "topic", nil, "TOPIC or TOPIC:P,P,... to reset (repeatable)")
	c.Flags().BoolVar(&allTopics, "all-topics", false, "every partition the group has a committed offset for")
	c.Flags().BoolVar(&earliest, "to-earliest", false, "reset to the log start")
	c.Flags().BoolVar(&latest, "to-latest", false, "reset to the log end")
	c.Flags().StringVar(&datetime, "to-datetime", "", "reset to the first offset at or after this RFC 3339 time (the log end if none)")
	c.Flags().Int64Var(&shiftBy, "shift-by", 0, "move the committed offset by N (negative: back), within the log")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print the new offsets without committing them")
	return c
}
