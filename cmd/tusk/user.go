package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
)

// newUserCmd is `tusk user create|delete|list`: SASL/SCRAM users over
// kadm's AlterUserSCRAMs and DescribeUserSCRAMs (docs/security.md,
// "SASL"). The password is salted on this machine; the broker stores
// only the salt, StoredKey, ServerKey and iterations.
func newUserCmd() *cobra.Command {
	cmd := groupCmd("user", "Create, delete and list SASL/SCRAM users (Kafka protocol; any Kafka-compatible broker)")
	o := addAdminFlags(cmd)
	cmd.AddCommand(userCreateCmd(o), userDeleteCmd(o), userListCmd(o))
	return cmd
}

// envUserPassword is the environment variable `user create` reads the
// new password from when neither --password nor --password-stdin is
// given.
const envUserPassword = "TUSK_USER_PASSWORD"

// parseMechanisms parses --mechanism values into kadm's.
func parseMechanisms(names []string) ([]kadm.ScramMechanism, error) {
	var out []kadm.ScramMechanism
	for _, n := range names {
		switch strings.ToUpper(strings.TrimSpace(n)) {
		case "SCRAM-SHA-256":
			out = append(out, kadm.ScramSha256)
		case "SCRAM-SHA-512":
			out = append(out, kadm.ScramSha512)
		default:
			return nil, usagef("--mechanism %q: want SCRAM-SHA-256 or SCRAM-SHA-512", n)
		}
	}
	return out, nil
}

func mechanismName(m kadm.ScramMechanism) string {
	switch m {
	case kadm.ScramSha256:
		return "SCRAM-SHA-256"
	case kadm.ScramSha512:
		return "SCRAM-SHA-512"
	}
	return fmt.Sprintf("UNKNOWN(%d)", int8(m))
}

// readPassword reads one line from r (the trailing newline dropped).
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func userCreateCmd(o *adminOpts) *cobra.Command {
	var (
		password   string
		fromStdin  bool
		mechanisms []string
		iterations int32
	)
	c := &cobra.Command{
		Use:   "create USER",
		Short: "Create a user, or set its password (SCRAM credentials for each --mechanism)",
		Long: "Create a user, or set its password. The password comes from --password, --password-stdin (one line) or $" + envUserPassword +
			"; it is salted here and only the salted keys reach the cluster. PLAIN authenticates against the same credentials.",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			user := args[0]
			if user == "" {
				return usagef("the user name is empty")
			}
			mechs, err := parseMechanisms(mechanisms)
			if err != nil {
				return err
			}
			if len(mechs) == 0 {
				return usagef("--mechanism: name at least one")
			}
			if iterations < 4096 || iterations > 16384 {
				return usagef("--iterations %d: want 4096 to 16384", iterations)
			}
			switch {
			case fromStdin && password != "":
				return usagef("--password and --password-stdin exclude each other")
			case fromStdin:
				if password, err = readPassword(cmd.InOrStdin()); err != nil {
					return err
				}
			case password == "":
				password = os.Getenv(envUserPassword)
			}
			if password == "" {
				return usagef("no password: give --password, --password-stdin or $%s", envUserPassword)
			}
			var ups []kadm.UpsertSCRAM
			for _, m := range mechs {
				ups = append(ups, kadm.UpsertSCRAM{User: user, Mechanism: m, Iterations: iterations, Password: password})
			}
			return o.run(cmd, func(ctx context.Context, adm *kadm.Client) error {
				res, err := adm.AlterUserSCRAMs(ctx, nil, ups)
				if err != nil {
					return fmt.Errorf("create user %s: %w", user, err)
				}
				return printUsersAltered(cmd.OutOrStdout(), o, res, "created")
			})
		},
	}
	fl := c.Flags()
	fl.StringVar(&password, "password", "", "the new password (visible in the process list: prefer --password-stdin or $"+envUserPassword+")")
	fl.BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of standard input")
	fl.StringSliceVar(&mechanisms, "mechanism", []string{"SCRAM-SHA-512", "SCRAM-SHA-256"}, "SCRAM mechanisms to create credentials for")
	fl.Int32Var(&iterations, "iterations", 4096, "PBKDF2 iterations (4096 to 16384)")
	return c
}

func userDeleteCmd(o *adminOpts) *cobra.Command {
	var mechanisms []string
	c := &cobra.Command{
		Use:   "delete USER...",
		Short: "Delete users (all their SCRAM credentials, or those of --mechanism)",
		Args:  usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			mechs, err := parseMechanisms(mechanisms)
			if err != nil {
				return err
			}
			return o.run(cmd, func(ctx context.Context, adm *kadm.Client) error {
				var dels []kadm.DeleteSCRAM
				var failed []string
				if len(mechs) == 0 {
					// Every credential the users have.
					desc, err := adm.DescribeUserSCRAMs(ctx, args...)
					if err != nil {
						return fmt.Errorf("describe users: %w", err)
					}
					for _, u := range args {
						d := desc[u]
						if d.Err != nil {
							failed = append(failed, u+": "+d.Err.Error())
							continue
						}
						for _, ci := range d.CredInfos {
							dels = append(dels, kadm.DeleteSCRAM{User: u, Mechanism: ci.Mechanism})
						}
					}
				} else {
					for _, u := range args {
						for _, m := range mechs {
							dels = append(dels, kadm.DeleteSCRAM{User: u, Mechanism: m})
						}
					}
				}
				res := kadm.AlteredUserSCRAMs{}
				if len(dels) > 0 {
					if res, err = adm.AlterUserSCRAMs(ctx, dels, nil); err != nil {
						return fmt.Errorf("delete users: %w", err)
					}
				}
				for _, f := range failed {
					u, msg, _ := strings.Cut(f, ": ")
					res[u] = kadm.AlteredUserSCRAM{User: u, ErrMessage: msg, Err: fmt.Errorf("%s", msg)}
				}
				return printUsersAltered(cmd.OutOrStdout(), o, res, "deleted")
			})
		},
	}
	c.Flags().StringSliceVar(&mechanisms, "mechanism", nil, "delete only these mechanisms' credentials (default: all the user has)")
	return c
}

// printUsersAltered prints one line (or JSON object) per user and fails if
// any user failed.
func printUsersAltered(w io.Writer, o *adminOpts, res kadm.AlteredUserSCRAMs, done string) error {
	users := make([]string, 0, len(res))
	for u := range res {
		users = append(users, u)
	}
	sort.Strings(users)
	type row struct {
		User  string `json:"user"`
		Error string `json:"error,omitempty"`
	}
	var rows []row
	var failed []string
	var table [][]string
	for _, u := range users {
		r := res[u]
		msg := ""
		if r.Err != nil {
			msg = r.Err.Error()
			if r.ErrMessage != "" && !strings.Contains(msg, r.ErrMessage) {
				msg += ": " + r.ErrMessage
			}
			failed = append(failed, u+": "+msg)
		}
		rows = append(rows, row{User: u, Error: msg})
		status := done
		if msg != "" {
			status = msg
		}
		table = append(table, []string{u, status})
	}
	var err error
	if o.json() {
		err = printJSON(w, rows)
	} else {
		err = printTable(w, []string{"USER", "RESULT"}, table)
	}
	if err != nil {
		return err
	}
	return itemErrors(failed)
}

func userListCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "list [USER...]",
		Short: "List users and their SCRAM mechanisms and iterations (all users, or those named)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, func(ctx context.Context, adm *kadm.Client) error {
				desc, err := adm.DescribeUserSCRAMs(ctx, args...)
				if err != nil {
					return fmt.Errorf("list users: %w", err)
				}
				users := make([]string, 0, len(desc))
				for u := range desc {
					users = append(users, u)
				}
				sort.Strings(users)
				type cred struct {
					Mechanism  string `json:"mechanism"`
					Iterations int32  `json:"iterations"`
				}
				type row struct {
					User        string `json:"user"`
					Credentials []cred `json:"credentials,omitempty"`
					Error       string `json:"error,omitempty"`
				}
				var rows []row
				var table [][]string
				var failed []string
				for _, u := range users {
					d := desc[u]
					r := row{User: u}
					if d.Err != nil {
						r.Error = d.Err.Error()
						failed = append(failed, u+": "+r.Error)
						table = append(table, []string{u, "", "", r.Error})
					}
					cis := d.CredInfos
					sort.Slice(cis, func(i, j int) bool { return cis[i].Mechanism < cis[j].Mechanism })
					for _, ci := range cis {
						r.Credentials = append(r.Credentials, cred{Mechanism: mechanismName(ci.Mechanism), Iterations: ci.Iterations})
						table = append(table, []string{u, mechanismName(ci.Mechanism), fmt.Sprint(ci.Iterations), ""})
					}
					rows = append(rows, r)
				}
				if o.json() {
					if rows == nil {
						rows = []row{}
					}
					err = printJSON(cmd.OutOrStdout(), rows)
				} else {
					err = printTable(cmd.OutOrStdout(), []string{"USER", "MECHANISM", "ITERATIONS", "ERROR"}, table)
				}
				if err != nil {
					return err
				}
				return itemErrors(failed)
			})
		},
	}
}
