// Package auth holds Tusk's authentication and authorization logic
// without I/O: principals, SASL PLAIN and SCRAM-SHA-256/512 server
// exchanges and credentials, and Kafka's ACL model with its matching
// rules. The broker wires it to connections and the Raft metadata holds
// the credentials and ACLs. The design is docs/security.md.
package auth
