# Tusk build, run and test targets. See README.md.
GO        ?= go
BIN       := bin/tusk
RACE_BIN  := bin/tusk-race
PKGS      := $(shell $(GO) list ./... | grep -v /compat-tests)
STATICCHECK_VERSION ?= v0.8.2

.PHONY: build build-race run test unit compat lint fuzz bench vet clean cluster cluster-secure test-faults soak

build:
	$(GO) build -o $(BIN) ./cmd/tusk

# tusk with the race detector, for the fault scenarios and the soak. The
# compat harness fails a test on any race report in a node's log (whatever
# the binary) and stretches the fault scenarios' lease, renewal and replica
# lag settings ×3 for a race build (TUSK_RACE=1, or detected from the
# binary's build information).
build-race:
	$(GO) build -race -o $(RACE_BIN) ./cmd/tusk

# A working single node with the embedded defaults (data in ./tusk-data,
# Kafka on 127.0.0.1:9092, HTTP on 127.0.0.1:9644).
run: build
	./$(BIN) serve

# A 3-node cluster on loopback (configs/cluster-node{1,2,3}.yaml): data in
# ./tusk-cluster/node{1,2,3}, Kafka on 127.0.0.1:9192, :9292, :9392. Prints
# the nodes' addresses; Ctrl-C (or SIGTERM) stops all three.
cluster: build
	BIN=$(BIN) ./scripts/cluster.sh

# The same 3 nodes with node-to-node mutual TLS (configs/secure-cluster-
# node{1,2,3}.yaml, docs/security.md): a throwaway CA and certificates from
# `tusk certs` in ./tusk-cluster-secure/certs, data in
# ./tusk-cluster-secure/node{1,2,3}, Kafka on 127.0.0.1:10192, :20192, :30192.
cluster-secure: build
	BIN=$(BIN) SECURE=1 ./scripts/cluster.sh

# Unit tests under -race (fuzz seed corpora run as ordinary tests), go vet,
# and the compat tests against real tusk processes.
test: vet unit compat

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 $(PKGS)

compat: build
	@rm -f bin/compat-report.txt
	TUSK_BIN=$(CURDIR)/$(BIN) TUSK_REPORT_CARD=$(CURDIR)/bin/compat-report.txt \
		$(GO) test -count=1 -timeout 30m ./compat-tests/; rc=$$?; cat bin/compat-report.txt 2>/dev/null; exit $$rc

lint: vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)
	@command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" staticcheck ./...

# Fault scenarios against real 3- and 4-node clusters (kill -9 of
# controllers, segment leaders, followers and group coordinators, five
# leader kills in a row, a frozen leader, a leader partitioned off with
# network namespaces (root only), re-replication to a spare node, sealed
# reads with the first leader down; rotation with a consumer group; restarts
# after kill -9, admin clients across a controller kill, spoofed replica
# fetches, SIGTERM with acks pending; exactly-once consume-transform-produce
# with a member and a segment leader killed, the transaction coordinator
# killed between EndTxn and the markers; KIP-848 and share groups with
# their coordinator, a consumer or a segment leader killed, and share
# acknowledgements across rolls), each
# repeated FAULT_COUNT times, against the race build. FAULT_NODE_TLS=1
# runs them with every node-to-node link (internal listeners, Raft) on
# mutual TLS with node certificates (docs/security.md).
FAULT_COUNT ?= 3
FAULT_NODE_TLS ?=
test-faults: build-race
	TUSK_COMPAT_NODE_TLS=$(FAULT_NODE_TLS) TUSK_RACE=1 TUSK_LONG_FAULTS=1 TUSK_BIN=$(CURDIR)/$(RACE_BIN) $(GO) test -count=$(FAULT_COUNT) -timeout 60m -v \
		-run 'TestClusterFailover|TestClusterSegmentFailover|TestClusterFollowerLossAndRejoin|TestClusterRotation|TestClusterFrozenLeader|TestClusterRepeatedLeaderLoss|TestClusterPartitionedLeader|TestClusterReReplication|TestClusterSealedReads|TestClusterCoordinatorFailover|TestClusterRestartAfterKill|TestClusterControllerKillAdmin|TestClusterReplicaFetchOnClientListener|TestClusterShutdownWithPendingAcks|TestClusterRollingRestartManyPartitions|TestClusterTxnEOS|TestClusterTxnCoordinatorKillBeforeMarkers|TestClusterGroup848CoordinatorKill|TestClusterShareKgoFailover|TestClusterShareRollAndFailover|TestClusterShareConsumerKilled|TestClusterShareGroupCoordinatorKill|TestClusterShareKgoAckTypes' ./compat-tests/

# A randomized no-loss soak (off CI): leader, follower and controller
# kills, frozen leaders and rolls under two producers and a consumer group
# on a 3-node cluster, against the race build; prints its seed and counts.
# Replay a run with SOAK_SEED=<seed>.
SOAK_DURATION ?= 10m
SOAK_SEED ?=
soak: build-race
	TUSK_RACE=1 TUSK_SOAK=1 TUSK_SOAK_DURATION=$(SOAK_DURATION) TUSK_SOAK_SEED=$(SOAK_SEED) TUSK_BIN=$(CURDIR)/$(RACE_BIN) \
		$(GO) test -count=1 -timeout 60m -v -run '^TestSoak$$' ./compat-tests/

# Run each fuzz target for FUZZTIME (seed corpora already run in `make test`).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./kafkaproto -run '^$$' -fuzz '^FuzzParseBatch$$' -fuzztime $(FUZZTIME)
	$(GO) test ./kafkaproto -run '^$$' -fuzz '^FuzzFrame$$' -fuzztime $(FUZZTIME)
	$(GO) test ./storage -run '^$$' -fuzz '^FuzzRecover$$' -fuzztime $(FUZZTIME)
	$(GO) test ./txn -run '^$$' -fuzz '^FuzzReplay$$' -fuzztime $(FUZZTIME)
	$(GO) test ./auth -run '^$$' -fuzz '^FuzzACLValidate$$' -fuzztime $(FUZZTIME)
	$(GO) test ./auth -run '^$$' -fuzz '^FuzzFilter$$' -fuzztime $(FUZZTIME)

# Storage micro-benchmarks and an end-to-end run against a fresh broker.
bench: build
	$(GO) test ./storage -run '^$$' -bench . -benchtime 2s
	./scripts/bench.sh

clean:
	rm -rf bin
