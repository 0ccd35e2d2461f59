package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"
	"golang.org/x/sys/unix"

	"github.com/tuskdb/tusk/broker"
	"github.com/tuskdb/tusk/configs"
	"github.com/tuskdb/tusk/console"
	"github.com/tuskdb/tusk/metadata"
	"github.com/tuskdb/tusk/storage"
	"github.com/tuskdb/tusk/tlsutil"
)

func newServeCmd() *cobra.Command {
	v := viper.New()
	var file string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a broker node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := configs.Load(v, file)
			if err != nil {
				return err
			}
			return serve(cfg)
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "YAML config file")
	if err := configs.BindFlags(cmd.Flags(), v); err != nil {
		panic(err) // programming error in the options table
	}
	return cmd
}

func newLogger(cfg configs.Config) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(cfg.Log.Level))
	if err != nil {
		return zerolog.Logger{}, fmt.Errorf("log.level: %w", err)
	}
	// Millisecond timestamps: failovers and rolls are read off the logs.
	// (zerolog keeps the field format process-wide; this is the binary's
	// entry point, which owns it.)
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	var l zerolog.Logger
	if cfg.Log.Format == "json" {
		l = zerolog.New(os.Stderr)
	} else {
		l = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "2006-01-02T15:04:05.000Z07:00"})
	}
	return l.Level(lvl).With().Timestamp().Int32("node", cfg.NodeID).Logger(), nil
}

func serve(cfg configs.Config) error {
	log, err := newLogger(cfg)
	if err != nil {
		return err
	}
	policy, err := storage.ParseFsyncPolicy(cfg.Storage.Fsync)
	if err != nil {
		return err
	}
	ioMode, err := storage.ParseIOMode(cfg.Storage.IO)
	if err != nil {
		return err
	}
	syncMethod, err := storage.ParseSyncMethod(cfg.Storage.CommitSync)
	if err != nil {
		return err
	}
	started := time.Now()
	engine, err := storage.Open(storage.Options{
		Dir:                    filepath.Join(cfg.DataDir, "logs"),
		Fsync:                  policy,
		FsyncInterval:          cfg.Storage.FsyncInterval,
		IO:                     ioMode,
		SyncMethod:             syncMethod,
		Logger:                 log.With().Str("component", "storage").Logger(),
		RetentionCheckInterval: cfg.Storage.RetentionCheckInterval,
		DeleteRate:             cfg.Storage.DeleteRate,
		BackgroundIORate:       cfg.Storage.BackgroundIORate,
		RecycleSegments:        cfg.Storage.RecycleSegments,
		DropBehind:             cfg.Storage.DropBehind,
		MaxOpenFiles:           cfg.Storage.MaxOpenFiles,
		OpenFileIdle:           cfg.Storage.OpenFileIdle,
	})
	if err != nil {
		return err
	}
	voters, err := metadata.ParseVoters(cfg.Voters)
	if err != nil {
		engine.Close()
		return err
	}
	// The node's TLS material, shared by the listeners and the Raft
	// transport (docs/security.md); the broker reloads it every
	// tls.reload-check, and at once on SIGHUP (below).
	var tlsMat *tlsutil.Reloader
	if files := (tlsutil.Files{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, CAFile: cfg.TLS.CAFile}); files.Set() {
		if tlsMat, err = tlsutil.Load(files); err != nil {
			engine.Close()
			return err
		}
	}
	store, err := metadata.OpenRaft(metadata.RaftOptions{
		TLS:               tlsMat,
		NodeID:            cfg.NodeID,
		Dir:               filepath.Join(cfg.DataDir, "raft"),
		Bind:              cfg.Raft.Listen,
		Voters:            voters,
		HeartbeatTimeout:  cfg.Raft.HeartbeatTimeout,
		ElectionTimeout:   cfg.Raft.ElectionTimeout,
		SnapshotThreshold: uint64(cfg.Raft.SnapshotThreshold),
		SnapshotInterval:  cfg.Raft.SnapshotInterval,
		LeaseTimeout:      cfg.Lease.Timeout,
		ReplicaRestore:    cfg.Replica.Restore,
		LeaseRenew:        cfg.Lease.Renew,
		Logger:            log.With().Str("component", "metadata").Logger(),
	})
	if err != nil {
		engine.Close()
		return err
	}
	b, err := broker.New(cfg, log, store, engine)
	if err != nil {
		engine.Close()
		store.Close()
		return err
	}
	// The web console on the HTTP port (package console).
	src := b.ConsoleSource(version)
	defer src.Close()
	b.MountHTTP(console.Paths, console.New(src, console.Options{AdminToken: cfg.HTTP.AdminToken}))
	b.SetTLS(tlsMat)
	if err := b.Listen(); err != nil {
		b.Close(context.Background())
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := b.Serve(); err != nil {
		b.Close(context.Background())
		return err
	}
	log.Info().Dur("startup", time.Since(started)).Str("storage_io", engine.IOBackend()).Msg("tusk started")
	logFDLimit(log)
	var sig os.Signal
	for sig == nil {
		select {
		case sig = <-sigs:
		case <-hup:
			// Reload the TLS files now rather than at the next check.
			switch {
			case b.TLS() == nil:
				log.Info().Msg("SIGHUP: no TLS configured")
			case !b.ReloadTLS():
				log.Info().Msg("SIGHUP: TLS files unchanged or not loadable; the current certificate stays")
			}
		}
	}
	log.Info().Str("signal", sig.String()).Msg("shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		log.Error().Err(err).Msg("shutdown failed")
		return err
	}
	log.Info().Msg("stopped")
	return nil
}

func newConfigDocCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "config-doc",
		Short: "Print the configuration reference as a Markdown table",
		Run: func(cmd *cobra.Command, _ []string) {
			w := cmd.OutOrStdout()
			fmt.Fprintln(w, "| flag | config key | environment | default | meaning |")
			fmt.Fprintln(w, "|---|---|---|---|---|")
			for _, o := range configs.Options() {
				fmt.Fprintf(w, "| `--%s` | `%s` | `%s` | `%v` | %s |\n", o.Flag(), o.Key, o.Env(), o.Default, o.Usage)
			}
		},
	}
}

// logFDLimit logs the open-file limit. Segment files hold descriptors
// only while in use, at most storage.max-open-files of them (by default
// derived from this limit, docs/io-and-scale.md section 3). The Go runtime
// raises the soft limit to the hard one at start; the hard limit is the
// operator's (README, "File descriptors").
func logFDLimit(log zerolog.Logger) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn().Err(err).Msg("read the open-file limit")
		return
	}
	log.Info().Uint64("soft", lim.Cur).Uint64("hard", lim.Max).Msg("open-file limit (segment files in use and connections; storage.max-open-files is derived from it)")
}
