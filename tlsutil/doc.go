// Package tlsutil loads, reloads and issues the TLS material of a Tusk
// node: the server and client configurations of the Kafka listeners, the
// internal listener and the Raft transport, node identities (a URI SAN
// tusk://node/<id> in a certificate of the cluster CA), and a small CA for
// tests and `make cluster-secure`. The design is docs/security.md.
package tlsutil
