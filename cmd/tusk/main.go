// Command tusk is the Tusk broker binary: serve, cluster admin, version and bench.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	root := &cobra.Command{
		Use:           "tusk",
		Short:         "Tusk: a Kafka-wire-compatible streaming broker",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Flag mistakes are usage errors (exit 2, admin.go).
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServeCmd(), newVersionCmd(), newBenchCmd(), newConfigDocCmd(), newClusterCmd(),
		newTopicCmd(), newGroupCmd(), newConfigCmd(), newCertsCmd(), newACLCmd(), newUserCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "tusk:", err)
		os.Exit(exitCode(err))
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "tusk", version) },
	}
}
