package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tuskdb/tusk/auth"
)

// newACLCmd is `tusk acl create|list|delete` (kadm's CreateAcls,
// DescribeAcls, DeleteAcls; docs/security.md, "ACLs").
func newACLCmd() *cobra.Command {
	cmd := groupCmd("acl", "Create, list and delete ACLs (Kafka protocol; any Kafka-compatible broker with an authorizer)")
	o := addAdminFlags(cmd)
	cmd.AddCommand(aclCreateCmd(o), aclListCmd(o), aclDeleteCmd(o))
	return cmd
}

// aclFlags are the resource, principal and operation flags of the acl
// subcommands.
type aclFlags struct {
	principals, hosts, operations []string
	topics, groups, txnIDs        []string
	cluster                       bool
	pattern, permission           string
	confirm                       bool
}

func (f *aclFlags) add(c *cobra.Command, filter bool) {
	fl := c.Flags()
	fl.StringSliceVar(&f.principals, "principal", nil, "principal, Type:name (User:alice, User:* for everyone); repeatable")
	fl.StringSliceVar(&f.topics, "topic", nil, "topic name (or * for every topic); repeatable")
	fl.StringSliceVar(&f.groups, "group", nil, "consumer group (or *); repeatable")
	fl.StringSliceVar(&f.txnIDs, "transactional-id", nil, "transactional id (or *); repeatable")
	fl.BoolVar(&f.cluster, "cluster", false, "the cluster resource (kafka-cluster)")
	if filter {
		fl.StringSliceVar(&f.hosts, "host", nil, "host (IP address or *); default any")
		fl.StringSliceVar(&f.operations, "operation", nil, "operation (read, write, create, delete, alter, describe, cluster_action, describe_configs, alter_configs, idempotent_write, all); default any")
		fl.StringVar(&f.pattern, "pattern", "any", "resource pattern: any (a name exactly, any pattern), match (every ACL that applies to the name), literal or prefixed")
		fl.StringVar(&f.permission, "permission", "any", "allow, deny or any")
	} else {
		fl.StringSliceVar(&f.hosts, "host", nil, "host (IP address) the ACL applies to; default * (every host)")
		fl.StringSliceVar(&f.operations, "operation", nil, "operation (read, write, create, delete, alter, describe, cluster_action, describe_configs, alter_configs, idempotent_write, all); repeatable")
		fl.StringVar(&f.pattern, "pattern", "literal", "resource pattern: literal (the name, or * for all) or prefixed (every name starting with it)")
		fl.StringVar(&f.permission, "permission", "allow", "allow or deny")
	}
}

// builder turns the flags into kadm's ACL builder, checking them (usage
// errors) as Kafka would check the request.
func (f *aclFlags) builder(filter bool) (*kadm.ACLBuilder, error) {
	b := kadm.NewACLs()
	pattern, err := auth.ParsePatternType(f.pattern)
	if err != nil {
		return nil, usagef("--pattern: %v", err)
	}
	if !filter && pattern != auth.PatternLiteral && pattern != auth.PatternPrefixed {
		return nil, usagef("--pattern %s: an ACL is literal or prefixed", f.pattern)
	}
	b.ResourcePatternType(kmsg.ACLResourcePatternType(pattern))

	resources := len(f.topics) + len(f.groups) + len(f.txnIDs)
	if f.cluster {
		resources++
	}
	switch {
	case resources == 0 && !filter:
		return nil, usagef("name a resource: --topic, --group, --transactional-id or --cluster")
	case resources == 0:
		b.AnyResource()
	default:
		b.MaybeTopics(f.topics...).MaybeGroups(f.groups...).MaybeTransactionalIDs(f.txnIDs...).MaybeClusters(f.cluster)
	}

	var ops []kadm.ACLOperation
	for _, s := range f.operations {
		op, err := auth.ParseOperation(s)
		if err != nil || !filter && op == auth.OpAny {
			return nil, usagef("--operation %q: not an operation", s)
		}
		ops = append(ops, kmsg.ACLOperation(op))
	}
	switch {
	case len(ops) == 0 && !filter:
		return nil, usagef("--operation is required")
	case len(ops) == 0:
		ops = []kadm.ACLOperation{kadm.OpAny}
	}
	b.Operations(ops...)

	for _, p := range f.principals {
		if _, err := auth.ParsePrincipal(p); err != nil {
			return nil, usagef("--principal %q: not Type:name (User:alice)", p)
		}
	}
	if !filter && len(f.principals) == 0 {
		return nil, usagef("--principal is required")
	}
	perm, err := auth.ParsePermission(f.permission)
	if err != nil || !filter && perm == auth.PermAny {
		return nil, usagef("--permission %q: allow or deny", f.permission)
	}
	hosts := f.hosts
	if !filter && len(hosts) == 0 {
		hosts = []string{auth.Wildcard}
	}
	if perm == auth.PermAllow || perm == auth.PermAny {
		b.Allow(f.principals...).AllowHosts(hosts...)
	}
	if perm == auth.PermDeny || perm == auth.PermAny {
		b.Deny(f.principals...).DenyHosts(hosts...)
	}
	if filter {
		if err := b.ValidateFilter(); err != nil {
			return nil, usageError{err}
		}
	} else if err := b.ValidateCreate(); err != nil {
		return nil, usageError{err}
	}
	return b, nil
}

// aclRow is one ACL as the commands print it.
type aclRow struct {
	Principal    string `json:"principal"`
	Host         string `json:"host"`
	Permission   string `json:"permission"`
	Operation    string `json:"operation"`
	ResourceType string `json:"resource_type"`
	ResourceName string `json:"resource_name"`
	Pattern      string `json:"pattern"`
	Error        string `json:"error,omitempty"`
}

func newACLRow(principal, host string, rt kmsg.ACLResourceType, name string, pt kmsg.ACLResourcePatternType, op kmsg.ACLOperation, perm kmsg.ACLPermissionType, err error) aclRow {
	r := aclRow{
		Principal: principal, Host: host,
		Permission: auth.Permission(perm).String(), Operation: auth.Operation(op).String(),
		ResourceType: auth.ResourceType(rt).String(), ResourceName: name, Pattern: auth.PatternType(pt).String(),
	}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

func printACLRows(c *cobra.Command, o *adminOpts, rows []aclRow) error {
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		return strings.Join([]string{a.ResourceType, a.ResourceName, a.Pattern, a.Principal, a.Host, a.Operation, a.Permission}, "\x00") <
			strings.Join([]string{b.ResourceType, b.ResourceName, b.Pattern, b.Principal, b.Host, b.Operation, b.Permission}, "\x00")
	})
	if o.json() {
		if rows == nil {
			rows = []aclRow{}
		}
		return printJSON(c.OutOrStdout(), rows)
	}
	var out [][]string
	for _, r := range rows {
		line := []string{r.Principal, r.Host, r.Permission, r.Operation, r.ResourceType, r.ResourceName, r.Pattern}
		if r.Error != "" {
			line = append(line, r.Error)
		}
		out = append(out, line)
	}
	return printTable(c.OutOrStdout(), []string{"PRINCIPAL", "HOST", "PERMISSION", "OPERATION", "RESOURCE-TYPE", "RESOURCE-NAME", "PATTERN"}, out)
}

func aclCreateCmd(o *adminOpts) *cobra.Command {
	f := &aclFlags{}
	c := &cobra.Command{
		Use:   "create",
		Short: "Create ACLs: every principal × host × operation × resource given",
		Example: `  tusk acl create --principal User:alice --operation read --operation describe --topic orders
  tusk acl create --principal User:alice --operation write --topic app- --pattern prefixed
  tusk acl create --principal User:alice --operation read --group '*'
  tusk acl create --principal User:bob --operation all --topic secret --permission deny`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			b, err := f.builder(false)
			if err != nil {
				return err
			}
			return o.run(c, func(ctx context.Context, adm *kadm.Client) error {
				res, err := adm.CreateACLs(ctx, b)
				if err != nil {
					return fmt.Errorf("create acls: %w", err)
				}
				var rows []aclRow
				var failed []string
				for _, r := range res {
					rows = append(rows, newACLRow(r.Principal, r.Host, r.Type, r.Name, r.Pattern, r.Operation, r.Permission, r.Err))
					if r.Err != nil {
						failed = append(failed, fmt.Sprintf("%s %s on %s:%s: %v", r.Principal, auth.Operation(r.Operation), auth.ResourceType(r.Type), r.Name, r.Err))
					}
				}
				if err := printACLRows(c, o, rows); err != nil {
					return err
				}
				return itemErrors(failed)
			})
		},
	}
	f.add(c, false)
	return c
}

func aclListCmd(o *adminOpts) *cobra.Command {
	f := &aclFlags{}
	c := &cobra.Command{
		Use:   "list",
		Short: "List ACLs (every ACL without flags; the flags filter)",
		Example: `  tusk acl list
  tusk acl list --principal User:alice
  tusk acl list --topic orders --pattern match   # every ACL that applies to topic orders`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			b, err := f.builder(true)
			if err != nil {
				return err
			}
			return o.run(c, func(ctx context.Context, adm *kadm.Client) error {
				res, err := adm.DescribeACLs(ctx, b)
				if err != nil {
					return fmt.Errorf("list acls: %w", err)
				}
				rows := []aclRow{}
				seen := map[aclRow]bool{} // filters of one builder can overlap
				for _, r := range res {
					if r.Err != nil {
						return fmt.Errorf("list acls: %w", r.Err)
					}
					for _, d := range r.Described {
						row := newACLRow(d.Principal, d.Host, d.Type, d.Name, d.Pattern, d.Operation, d.Permission, nil)
						if !seen[row] {
							seen[row] = true
							rows = append(rows, row)
						}
					}
				}
				return printACLRows(c, o, rows)
			})
		},
	}
	f.add(c, true)
	return c
}

func aclDeleteCmd(o *adminOpts) *cobra.Command {
	f := &aclFlags{}
	c := &cobra.Command{
		Use:   "delete",
		Short: "Delete the ACLs the flags match (--all-acls to delete every ACL)",
		Example: `  tusk acl delete --principal User:alice --topic orders
  tusk acl delete --topic app- --pattern prefixed --operation write`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			narrowed := len(f.principals)+len(f.topics)+len(f.groups)+len(f.txnIDs)+len(f.hosts)+len(f.operations) > 0 || f.cluster
			if !narrowed && !f.confirm {
				return usagef("no filter given: this would delete every ACL; add --all-acls to do so")
			}
			b, err := f.builder(true)
			if err != nil {
				return err
			}
			return o.run(c, func(ctx context.Context, adm *kadm.Client) error {
				res, err := adm.DeleteACLs(ctx, b)
				if err != nil {
					return fmt.Errorf("delete acls: %w", err)
				}
				rows := []aclRow{}
				var failed []string
				for _, r := range res {
					if r.Err != nil {
						failed = append(failed, r.Err.Error())
						continue
					}
					for _, d := range r.Deleted {
						rows = append(rows, newACLRow(d.Principal, d.Host, d.Type, d.Name, d.Pattern, d.Operation, d.Permission, d.Err))
						if d.Err != nil {
							failed = append(failed, d.Err.Error())
						}
					}
				}
				if err := printACLRows(c, o, rows); err != nil {
					return err
				}
				return itemErrors(failed)
			})
		},
	}
	f.add(c, true)
	c.Flags().BoolVar(&f.confirm, "all-acls", false, "allow deleting without a filter (every ACL)")
	return c
}
