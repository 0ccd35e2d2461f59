"""What Confluent Schema Registry does with its _schemas topic, through
confluent-kafka-python (librdkafka), as a user's Registry would.

Driven by TestConfluentSchemasTopic (compaction_config_test.go):

    python3 confluent_schemas.py BOOTSTRAP create
    python3 confluent_schemas.py BOOTSTRAP read

create: the AdminClient creates _schemas with one partition and
cleanup.policy=compact (the Registry refuses to start on any other
policy), reads it back with describe_configs, then a Producer writes
schema records keyed as the Registry keys them and, last, one record
without a key, which a compacted topic must refuse.

read: describe_configs again, then a Consumer reads _schemas from the
start to its high watermark.

The last line printed is one JSON object:

    {"policy": {"value", "source", "is_default", "synonyms": [[name, value, source], ...]},
     "partitions": n,               (create)
     "written": [offset, ...],      (create: the keyed records' offsets)
     "keyless_error": "INVALID_RECORD" or null,  (create)
     "records": [[offset, key, value], ...]}     (read)
"""

import json
import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic

TOPIC = "_schemas"
TIMEOUT = 30

SCHEMAS = [
    ('{"keytype":"SCHEMA","subject":"orders-value","version":1,"magic":1}',
     '{"subject":"orders-value","version":1,"id":1,"schema":"{\\"type\\":\\"string\\"}","deleted":false}'),
    ('{"keytype":"SCHEMA","subject":"users-value","version":1,"magic":1}',
     '{"subject":"users-value","version":1,"id":2,"schema":"{\\"type\\":\\"long\\"}","deleted":false}'),
    ('{"keytype":"CONFIG","subject":null,"magic":0}', '{"compatibilityLevel":"BACKWARD"}'),
    ('{"keytype":"NOOP","magic":0}', None),
]


def describe_policy(admin):
    res = ConfigResource(ConfigResource.Type.TOPIC, TOPIC)
    configs = admin.describe_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    e = configs["cleanup.policy"]
    syns = e.synonyms.values() if isinstance(e.synonyms, dict) else e.synonyms
    return {
        "value": e.value,
        "source": source_name(e.source),
        "is_default": e.is_default,
        "synonyms": [[s.name, s.value, source_name(s.source)] for s in syns],
    }


def source_name(source):
    """ConfigSource's name (confluent-kafka 1.x gives the number)."""
    return ConfigSource(int(getattr(source, "value", source))).name


def create(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics([NewTopic(TOPIC, 1, 1, config={"cleanup.policy": "compact"})], request_timeout=TIMEOUT)
    fs[TOPIC].result(timeout=TIMEOUT)
    out = {"policy": describe_policy(admin)}
    md = admin.list_topics(TOPIC, timeout=TIMEOUT)
    out["partitions"] = len(md.topics[TOPIC].partitions)

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    written, errors = [], []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            written.append(msg.offset())

    for key, value in SCHEMAS:
        producer.produce(TOPIC, key=key.encode(), value=None if value is None else value.encode(), partition=0, on_delivery=report)
        producer.flush(TIMEOUT)  # one at a time, as the Registry writes
    if errors:
        raise KafkaException(errors[0])
    out["written"] = written

    keyless = []
    producer.produce(TOPIC, value=b"no key", partition=0, on_delivery=lambda err, msg: keyless.append(err))
    producer.flush(TIMEOUT)
    out["keyless_error"] = keyless[0].name() if keyless and keyless[0] is not None else None
    return out


def read(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    out = {"policy": describe_policy(admin)}
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "schema-registry-like", "enable.auto.commit": False})
    _, high = consumer.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=TIMEOUT)
    consumer.assign([TopicPartition(TOPIC, 0, 0)])
    records = []
    while not records or records[-1][0] < high - 1:
        msg = consumer.poll(TIMEOUT)
        if msg is None:
            raise RuntimeError("no record within %ds after %d of %d" % (TIMEOUT, len(records), high))
        if msg.error():
            raise KafkaException(msg.error())
        key, value = msg.key(), msg.value()
        records.append([msg.offset(), None if key is None else key.decode(), None if value is None else value.decode()])
    consumer.close()
    out["records"] = records
    return out


def main():
    bootstrap, mode = sys.argv[1], sys.argv[2]
    out = create(bootstrap) if mode == "create" else read(bootstrap)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
