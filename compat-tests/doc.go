// Package compat holds Tusk's client-compatibility test suite: real Kafka
// clients (franz-go kgo/kadm, IBM/sarama, segmentio/kafka-go, kcat, raw
// kmsg frames) driven against a real `tusk serve` process on OS-picked
// loopback ports. All code lives in _test.go files; see README.md.
//
// Environment:
//
//	TUSK_BIN=path          use this binary instead of building ./cmd/tusk
//	TUSK_COMPAT_KFAKE=1    build ./compat-tests/internal/kfaketusk instead
//	                       (franz-go's kfake behind the tusk CLI contract);
//	                       only for validating the suite itself
//	TUSK_REQUIRE_TOOLS=1   fail instead of skip when kcat, ip (network
//	                       namespaces), node and npm (kafkajs) or python3's
//	                       confluent_kafka is missing
//	                       (chromium, for the web console's browser test, is
//	                       always required: that test fails without it)
//	TUSK_UPDATE_CONSOLE_PNG=1  the console test also writes its partition
//	                       timeline screenshot to docs/console.png (README)
package compat
