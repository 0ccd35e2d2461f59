package configs

import (
	"reflect"
	"strings"
	"testing"
)

func TestKafkaListenersDefaultIsOnePlaintext(t *testing.T) {
	c := Default()
	ls, err := c.KafkaListeners()
	if err != nil {
		t.Fatal(err)
	}
	want := []Listener{{Name: "PLAINTEXT", Protocol: "PLAINTEXT", Addr: "127.0.0.1:9092"}}
	if !reflect.DeepEqual(ls, want) {
		t.Fatalf("listeners %+v, want %+v", ls, want)
	}
	c.Kafka.Advertised = "kafka.example:9092"
	ls, err = c.KafkaListeners()
	if err != nil {
		t.Fatal(err)
	}
	if ls[0].Advertised != "kafka.example:9092" {
		t.Fatalf("advertised %q", ls[0].Advertised)
	}
}

func TestKafkaListenersParse(t *testing.T) {
	c := Default()
	c.TLS.CertFile, c.TLS.KeyFile = "c.pem", "k.pem"
	c.Kafka.Listeners = "PLAINTEXT://127.0.0.1:9092, ssl://:9093,EXTERNAL://[::1]:0"
	c.Kafka.ListenerProtocols = "external:SASL_SSL"
	c.Kafka.AdvertisedListeners = "EXTERNAL://broker1.example:19094,SSL://10.0.0.1:9093"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ls, err := c.KafkaListeners()
	if err != nil {
		t.Fatal(err)
	}
	want := []Listener{
		{Name: "PLAINTEXT", Protocol: "PLAINTEXT", Addr: "127.0.0.1:9092"},
		{Name: "SSL", Protocol: "SSL", Addr: ":9093", Advertised: "10.0.0.1:9093"},
		{Name: "EXTERNAL", Protocol: "SASL_SSL", Addr: "[::1]:0", Advertised: "broker1.example:19094"},
	}
	if !reflect.DeepEqual(ls, want) {
		t.Fatalf("listeners\n%+v\nwant\n%+v", ls, want)
	}
}

func TestKafkaListenersInvalid(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		listeners, adv, protos     string
		advertised, auth, certFile string
		want                       string
	}{
		{name: "unknown protocol", listeners: "A://127.0.0.1:1", protos: "A:TLS", want: `unknown protocol "TLS"`},
		{name: "no protocol", listeners: "CLIENT://127.0.0.1:1", want: "listener CLIENT has no protocol"},
		{name: "duplicate name", listeners: "PLAINTEXT://127.0.0.1:1,plaintext://127.0.0.1:2", want: "listener PLAINTEXT appears twice"},
		{name: "duplicate mapping", listeners: "A://127.0.0.1:1", protos: "A:SSL,a:PLAINTEXT", want: "listener A is mapped twice"},
		{name: "advertised not a listener", listeners: "PLAINTEXT://127.0.0.1:1", adv: "SSL://h:1", want: "SSL is not a listener of kafka.listeners"},
		{name: "advertised port 0", listeners: "PLAINTEXT://127.0.0.1:0", adv: "PLAINTEXT://h:0", want: `port "0" must be in [1, 65535]`},
		{name: "advertised wildcard", listeners: "PLAINTEXT://:0", adv: "PLAINTEXT://0.0.0.0:9092", want: "is not an address clients can connect to"},
		{name: "bad entry", listeners: "127.0.0.1:9092", want: "want NAME://host:port"},
		{name: "bad address", listeners: "PLAINTEXT://localhost", want: "missing port"},
		{name: "advertised with listeners", listeners: "PLAINTEXT://127.0.0.1:1", advertised: "h:1", want: "use kafka.advertised-listeners"},
		{name: "advertised-listeners alone", adv: "PLAINTEXT://h:1", want: "kafka.advertised-listeners is set without kafka.listeners"},
		{name: "ssl without cert", listeners: "SSL://127.0.0.1:1", want: "listener SSL is SSL: tls.cert-file and tls.key-file are required"},
		{name: "client auth", auth: "always", want: `tls.client-auth "always"`},
		{name: "client auth without CA", auth: "required", certFile: "c.pem", want: "tls.client-auth required needs tls.ca-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Kafka.Listeners, c.Kafka.AdvertisedListeners, c.Kafka.ListenerProtocols = tc.listeners, tc.adv, tc.protos
			c.Kafka.Advertised = tc.advertised
			if tc.auth != "" {
				c.TLS.ClientAuth = tc.auth
			}
			if tc.certFile != "" {
				c.TLS.CertFile, c.TLS.KeyFile = tc.certFile, "k.pem"
			}
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
