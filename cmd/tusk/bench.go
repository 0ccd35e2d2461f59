package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tuskdb/tusk/bench"
)

// newBenchCmd returns `tusk bench`: an end-to-end produce/consume load test
// against any Kafka-compatible address. It prints bench.Result's table on
// stdout and progress on stderr.
func newBenchCmd() *cobra.Command {
	cfg := bench.DefaultConfig()
	var jsonOut bool
	var useTLS bool
	var tlsCA, tlsCert, tlsKey string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Produce (and consume) load against a Kafka-compatible cluster and report throughput and latency",
		Long: `bench creates the topic if it is missing, produces --records records of
--record-size bytes from --producers clients, and (with --consume) reads them
back concurrently. It reports produce throughput, produce latency (send to
acknowledgement) and end-to-end latency (send to consume) at p50/p99/p99.9.
MB means 2^20 bytes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if useTLS || tlsCA != "" || tlsCert != "" {
				c, err := clientTLS(tlsCA, tlsCert, tlsKey)
				if err != nil {
					return err
				}
				cfg.TLS = c
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := bench.Run(ctx, cfg, cmd.ErrOrStderr())
			switch {
			case jsonOut:
				// Durations in nanoseconds; printed even after a failed run.
				b, jerr := json.Marshal(res)
				if jerr != nil {
					return errors.Join(err, fmt.Errorf("bench: encode result: %w", jerr))
				}
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
			case res.Produced > 0 || res.Errors > 0 || res.Consumed > 0:
				fmt.Fprint(cmd.OutOrStdout(), res.String())
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&cfg.Brokers, "brokers", cfg.Brokers, "seed brokers, host:port (comma separated)")
	f.StringVar(&cfg.Topic, "topic", cfg.Topic, "topic to produce to; created if missing")
	f.Int32Var(&cfg.Partitions, "partitions", cfg.Partitions, "partitions when creating the topic")
	f.Int64Var(&cfg.Records, "records", cfg.Records, "records to produce in total")
	f.IntVar(&cfg.RecordSize, "record-size", cfg.RecordSize, "record value size in bytes")
	f.Int64Var(&cfg.KeySpace, "key-space", cfg.KeySpace, "give records keys cycling over this many distinct keys (key-000042...), e.g. for a compacted topic; 0: no keys")
	f.IntVar(&cfg.Producers, "producers", cfg.Producers, "concurrent producer clients")
	f.StringVar(&cfg.Acks, "acks", cfg.Acks, "required acks: all, 1 or 0")
	f.StringVar(&cfg.Compression, "compression", cfg.Compression, "batch compression: none, gzip, snappy, lz4 or zstd")
	f.Float64Var(&cfg.Rate, "rate", cfg.Rate, "total produce target in MB/s (0 = unlimited)")
	f.BoolVar(&cfg.Consume, "consume", cfg.Consume, "consume the records back and measure end-to-end latency")
	f.BoolVar(&cfg.ConsumeOnly, "consume-only", cfg.ConsumeOnly, "produce nothing: read the topic's existing records (log start to end) and report consume throughput")
	f.DurationVar(&cfg.Linger, "linger", cfg.Linger, "producer linger")
	f.Int32Var(&cfg.BatchMaxBytes, "batch-max-bytes", cfg.BatchMaxBytes, "producer batch max bytes")
	f.BoolVar(&cfg.Idempotent, "idempotent", cfg.Idempotent, "idempotent producer (requires --acks all; switched off otherwise)")
	f.BoolVar(&cfg.Sequential, "sequential", false, "each producer waits for a record's acknowledgement before sending the next (latency is the bare round trip)")
	f.Int64Var(&cfg.TxnRecords, "txn-records", 0, "transactional producers (acks=all, idempotent): each commits a transaction every this many records; 0: no transactions")
	f.BoolVar(&useTLS, "tls", false, "connect with TLS (an SSL listener; implied by --tls-ca, --tls-cert)")
	f.StringVar(&tlsCA, "tls-ca", "", "PEM CA file to verify the brokers with (default: the system roots)")
	f.StringVar(&tlsCert, "tls-cert", "", "PEM client certificate (mutual TLS)")
	f.StringVar(&tlsKey, "tls-key", "", "PEM key of --tls-cert")
	f.BoolVar(&jsonOut, "json", false, "print the result as one JSON object (durations in nanoseconds) instead of a table")
	f.DurationVar(&cfg.Timeout, "timeout", bench.DefaultTimeout, "give up when a phase makes no progress for this long")
	cmd.AddCommand(newBenchScaleCmd())
	return cmd
}
