"""Produce and consume over an SSL listener with confluent-kafka (librdkafka).

Driven by TestTLSClients (tls_test.go):

    python3 confluent_ssl.py BOOTSTRAP TOPIC COUNT CA_FILE [CERT_FILE KEY_FILE]

Produces COUNT records "confluent-ssl-<i>" to partition 0 of TOPIC (which
exists) over security.protocol=SSL, trusting CA_FILE (and presenting the
client certificate when given), then reads the partition from the beginning
with a new consumer until COUNT records arrived. Prints one line per record
consumed, "<offset> <value>", and exits 0; errors go to stderr with exit 1.
"""

import sys

from confluent_kafka import Consumer, Producer, TopicPartition


def main():
    bootstrap, topic, count, ca = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    conf = {"bootstrap.servers": bootstrap, "security.protocol": "SSL", "ssl.ca.location": ca}
    if len(sys.argv) > 6:
        conf["ssl.certificate.location"], conf["ssl.key.location"] = sys.argv[5], sys.argv[6]
    errors = []

    def delivered(err, msg):
        if err is not None:
            errors.append(str(err))

    p = Producer(dict(conf, **{"client.id": "tusk-compat-confluent-ssl", "acks": "all"}))
    for i in range(count):
        p.produce(topic, value=("confluent-ssl-%d" % i).encode(), partition=0, on_delivery=delivered)
    if p.flush(30) != 0 or errors:
        print("produce failed: %s" % errors, file=sys.stderr)
        return 1

    c = Consumer(dict(conf, **{"group.id": "tusk-compat-confluent-ssl", "enable.auto.commit": False,
                               "auto.offset.reset": "earliest"}))
    c.assign([TopicPartition(topic, 0, 0)])
    got = 0
    idle = 0
    while got < count and idle < 60:
        m = c.poll(1.0)
        if m is None:
            idle += 1
            continue
        if m.error():
            print("consume error: %s" % m.error(), file=sys.stderr)
            return 1
        print("%d %s" % (m.offset(), m.value().decode()))
        got += 1
    c.close()
    if got < count:
        print("consumed %d of %d" % (got, count), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
