"""A SASL login, a produce and a consume with confluent-kafka-python
(librdkafka) or kafka-python, driven by TestSASLClients (sasl_test.go):

    python3 sasl_clients.py CLIENT BOOTSTRAP PROTOCOL MECHANISM USER PASSWORD TOPIC [CAFILE]

CLIENT is confluent or kafka-python; PROTOCOL SASL_PLAINTEXT or
SASL_SSL (CAFILE verifies the broker's certificate). It produces
"CLIENT-0".."CLIENT-2" to partition 0 of TOPIC and reads partition 0
from the start until it saw them. The last line printed is one JSON
object:

    {"ok": true, "records": [[offset, value], ...]}
    {"ok": false, "error": "..."}           (authentication failed)
"""

import json
import logging
import sys
import time

TIMEOUT = 30


def confluent(bootstrap, protocol, mech, user, password, topic, cafile):
    from confluent_kafka import Consumer, KafkaException, Producer

    conf = {
        "bootstrap.servers": bootstrap,
        "security.protocol": protocol,
        "sasl.mechanisms": mech,
        "sasl.username": user,
        "sasl.password": password,
    }
    if cafile:
        conf["ssl.ca.location"] = cafile
    errors = []

    def on_error(err):
        errors.append(err)

    p = Producer(dict(conf, error_cb=on_error))
    delivered = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered.append(msg.offset())

    for i in range(3):
        p.produce(topic, value=("confluent-%d" % i).encode(), partition=0, on_delivery=on_delivery)
    deadline = time.time() + TIMEOUT
    while len(delivered) < 3 and time.time() < deadline:
        p.poll(0.2)
        if any(e.code() == -169 or "uthentication" in e.str() for e in errors if hasattr(e, "code")):
            # _AUTHENTICATION (-169): librdkafka keeps retrying; stop here.
            return {"ok": False, "error": "; ".join(e.str() for e in errors)}
    if len(delivered) < 3:
        return {"ok": False, "error": "not delivered: " + "; ".join(str(e) for e in errors)}
    c = Consumer(dict(conf, **{"group.id": "sasl-" + topic, "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    c.subscribe([topic])
    records = []
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and not any(v == "confluent-2" for _, v in records):
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            raise KafkaException(m.error())
        records.append([m.offset(), m.value().decode()])
    c.close()
    return {"ok": True, "records": records}


class _Collect(logging.Handler):
    """Keeps kafka-python's log messages: it reports a failed login as
    NoBrokersAvailable and logs the authentication error."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def kafka_python(bootstrap, protocol, mech, user, password, topic, cafile):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import KafkaError

    logs = _Collect()
    logging.getLogger("kafka").addHandler(logs)

    conf = dict(
        bootstrap_servers=[bootstrap],
        security_protocol=protocol,
        sasl_mechanism=mech,
        sasl_plain_username=user,
        sasl_plain_password=password,
        api_version_auto_timeout_ms=10000,
    )
    if cafile:
        conf["ssl_cafile"] = cafile
        conf["ssl_check_hostname"] = True
    try:
        p = KafkaProducer(**conf)
    except KafkaError as e:
        return {"ok": False, "error": "%s: %s; logged: %s" % (type(e).__name__, e, " | ".join(logs.messages))}
    for i in range(3):
        p.send(topic, value=("kafka-python-%d" % i).encode(), partition=0).get(timeout=TIMEOUT)
    p.close()
    c = KafkaConsumer(consumer_timeout_ms=TIMEOUT * 1000, **conf)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    records = []
    for m in c:
        records.append([m.offset, m.value.decode()])
        if m.value == b"kafka-python-2":
            break
    c.close()
    return {"ok": True, "records": records}


def main():
    client, bootstrap, protocol, mech, user, password, topic = sys.argv[1:8]
    cafile = sys.argv[8] if len(sys.argv) > 8 else None
    fn = confluent if client == "confluent" else kafka_python
    try:
        out = fn(bootstrap, protocol, mech, user, password, topic, cafile)
    except Exception as e:  # an authentication failure may surface anywhere
        out = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
