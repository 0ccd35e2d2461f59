package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The admin commands (`tusk topic|group|config`) talk the Kafka protocol
// through kadm, so they work against any Kafka-compatible broker. They
// share the flags below, print tables (or JSON with --format json), and
// exit 0 on success, 1 on an error (from the cluster, or one item of
// several failing), 2 on a usage error.

// envBrokers is the environment variable --brokers defaults to.
const envBrokers = "TUSK_BROKERS"

const defaultBrokers = "127.0.0.1:9092"

// usageError marks a command-line mistake (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// usageArgs makes an argument validator's error a usage error.
func usageArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// exitCode maps a command's error to the process exit code.
func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command ") {
		return 2
	}
	return 1
}

// groupCmd is a command that only holds subcommands: run bare or with an
// unknown subcommand it is a usage error (cobra would print help and
// exit 0).
func groupCmd(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("%s: a subcommand is required (see tusk %s --help)", use, use)
			}
			return usagef("%s: unknown subcommand %q (see tusk %s --help)", use, args[0], use)
		},
	}
}

// adminOpts are the flags every admin command shares.
type adminOpts struct {
	brokers string
	format  string
	timeout time.Duration
	// TLS and SASL towards the brokers (docs/security.md).
	tls                    bool
	tlsCA, tlsCert, tlsKey string
	saslMechanism          string
	saslUser, saslPassword string
}

// Environment defaults of the CLI's secret-ish flags (kept out of
// command lines that ps shows).
const (
	envSASLUser     = "TUSK_CLI_SASL_USER"
	envSASLPassword = "TUSK_CLI_SASL_PASSWORD"
)

func addAdminFlags(cmd *cobra.Command) *adminOpts {
	o := &adminOpts{}
	def := os.Getenv(envBrokers)
	if def == "" {
		def = defaultBrokers
	}
	cmd.PersistentFlags().StringVar(&o.brokers, "brokers", def, "comma-separated bootstrap brokers (host:port); default $"+envBrokers+" or "+defaultBrokers)
	cmd.PersistentFlags().StringVar(&o.format, "format", "table", "output format: table or json")
	cmd.PersistentFlags().DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for the cluster")
	cmd.PersistentFlags().BoolVar(&o.tls, "tls", false, "connect with TLS (implied by --tls-ca, --tls-cert)")
	cmd.PersistentFlags().StringVar(&o.tlsCA, "tls-ca", "", "PEM CA file to verify the brokers with (default: the system roots)")
	cmd.PersistentFlags().StringVar(&o.tlsCert, "tls-cert", "", "PEM client certificate (mutual TLS)")
	cmd.PersistentFlags().StringVar(&o.tlsKey, "tls-key", "", "PEM key of --tls-cert")
	cmd.PersistentFlags().StringVar(&o.saslMechanism, "sasl-mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: none)")
	cmd.PersistentFlags().StringVar(&o.saslUser, "sasl-user", os.Getenv(envSASLUser), "SASL user name; default $"+envSASLUser)
	cmd.PersistentFlags().StringVar(&o.saslPassword, "sasl-password", os.Getenv(envSASLPassword), "SASL password; default $"+envSASLPassword+" (prefer it: a flag shows in ps)")
	return o
}

// clientOpts turns the TLS and SASL flags into kgo options.
func (o *adminOpts) clientOpts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if o.tls || o.tlsCA != "" || o.tlsCert != "" {
		cfg, err := clientTLS(o.tlsCA, o.tlsCert, o.tlsKey)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	switch strings.ToUpper(o.saslMechanism) {
	case "":
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: o.saslUser, Pass: o.saslPassword}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: o.saslUser, Pass: o.saslPassword}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: o.saslUser, Pass: o.saslPassword}.AsSha512Mechanism()))
	default:
		return nil, usagef("--sasl-mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", o.saslMechanism)
	}
	return opts, nil
}

// clientTLS is a client's TLS configuration from the --tls-ca,
// --tls-cert and --tls-key flags (the system roots without a CA).
func clientTLS(ca, cert, key string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, usagef("--tls-ca: %v", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, usagef("--tls-ca %s: no PEM certificate", ca)
		}
	}
	if (cert == "") != (key == "") {
		return nil, usagef("--tls-cert and --tls-key go together")
	}
	if cert != "" {
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, usagef("--tls-cert/--tls-key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return cfg, nil
}

// run checks the shared flags, connects, and runs f with a client and a
// context bounded by --timeout.
func (o *adminOpts) run(c *cobra.Command, f func(ctx context.Context, adm *kadm.Client) error) error {
	if o.format != "table" && o.format != "json" {
		return usagef("--format %q: want table or json", o.format)
	}
	var seeds []string
	for _, s := range strings.Split(o.brokers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		return usagef("--brokers: no broker address given")
	}
	sec, err := o.clientOpts()
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.ClientID("tusk-cli"), kgo.DialTimeout(5 * time.Second)}, sec...)...)
	if err != nil {
		return fmt.Errorf("connect %s: %w", o.brokers, err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(c.Context(), o.timeout)
	defer cancel()
	return f(ctx, kadm.NewClient(cl))
}

func (o *adminOpts) json() bool { return o.format == "json" }

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printTable writes rows under headers, aligned.
func printTable(w io.Writer, headers []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// itemErrors is the error of a command whose items failed one by one
// (each already printed); it makes the exit code 1.
func itemErrors(failed []string) error {
	if len(failed) == 0 {
		return nil
	}
	sort.Strings(failed)
	return fmt.Errorf("%d failed: %s", len(failed), strings.Join(failed, "; "))
}

// topicIDString prints a topic ID as Kafka does (Uuid.toString: URL-safe
// base64 without padding).
func topicIDString(id kadm.TopicID) string { return base64.RawURLEncoding.EncodeToString(id[:]) }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func ints32(ps []int32) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ",")
}

// parseKV parses key=value arguments.
func parseKV(args []string) (map[string]string, error) {
	out := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, usagef("%q: want key=value", a)
		}
		out[k] = v
	}
	return out, nil
}
