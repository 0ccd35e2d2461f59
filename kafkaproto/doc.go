// Package kafkaproto owns the Kafka wire format below the message bodies:
// size-prefixed frames, request and response headers (including flexible
// versions and their tagged fields), record-batch v2 parsing and validation
// (CRC-32C), record decoding for off-hot-path look-ups, and compression
// codecs. Message bodies are encoded and decoded by franz-go's kmsg; the
// coordinator records kmsg lacks (KIP-848 and KIP-932) by the small Schema
// codec in schema.go.
//
// Everything here is stateless and safe for concurrent use unless a type
// says otherwise. Nothing here imports other Tusk packages.
//
// Frame:
//
//	+----------+-----------------------------------------------+
//	| size i32 | request header | body (kmsg encoding)         |
//	+----------+-----------------------------------------------+
//
// Request header: api_key i16, api_version i16, correlation_id i32,
// client_id nullable string (i16 length), and in flexible versions a tagged
// field section. Response header: correlation_id i32, and for flexible
// versions except ApiVersions a tagged field section.
package kafkaproto
