// Package configs owns Tusk's configuration: the Config struct, every
// default in one place (Default and the Options table), Validate, and
// loading from a YAML file, TUSK_* environment variables and command-line
// flags with viper. Each option has one key ("kafka.listen"), one flag
// ("--kafka-listen") and one environment variable ("TUSK_KAFKA_LISTEN").
//
// TopicConfigs is the allow-list of topic-level configs with their types,
// defaults, ranges and Kafka broker synonyms; ValidateTopicConfig checks an
// override against it (the broker on every CreateTopics and AlterConfigs,
// the metadata store on every command before it enters the Raft log).
// CleanupPolicy parses cleanup.policy and CleaningConfig resolves a
// topic's compaction settings for the log cleaner.
//
// Example files for a single node and a local cluster live beside this file.
// Nothing here imports other Tusk packages. Config values are plain data and
// safe to copy.
package configs
