"""librdkafka transactions (confluent-kafka-python) against tusk.

Driven by TestTxnConfluent (txn_clients_test.go):

    python3 confluent_txn.py '{"bootstrap": "127.0.0.1:port", "topic": ..., "input": ...,
                               "output": ..., "group": ..., "partitions": 3, "inputPerPartition": 20}'

1. A transactional producer (init_transactions) commits a transaction of 10
   records to each partition of the topic (c1-p<P>-<i>), aborts one of 10
   more (a2-p<P>-<i>), and commits one sentinel per partition (end-p<P>).
2. Consumers with isolation.level=read_committed and read_uncommitted read
   the topic from the beginning until they have seen every sentinel.
3. Consume-transform-produce: first a transaction that writes "bogus" to
   the output and sends the input's end offsets for the group
   (send_offsets_to_transaction), aborted; then a read_committed consumer
   of the group (auto commit off) turns each consume() batch of the input
   into one transaction (out-<value> to the same partition of the output,
   send_offsets_to_transaction with the consumer's group metadata, the
   generation and member id of KIP-447), committed, until every input record
   was processed.

The last line on stdout is one JSON object: {"readCommitted": [...],
"readUncommitted": [...], "ctp": {...}, "error": null or a message}, each
record as {"p": partition, "o": offset, "v": value}.
"""

import json
import sys
import time
import traceback

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def read_all(cfg, group, isolation):
    """Reads cfg's topic from the start until every sentinel was seen."""
    c = Consumer({
        "bootstrap.servers": cfg["bootstrap"],
        "group.id": group,
        "isolation.level": isolation,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 200,
    })
    got, sentinels = [], set()
    deadline = time.monotonic() + 60
    try:
        c.subscribe([cfg["topic"]])
        while len(sentinels) < cfg["partitions"]:
            if time.monotonic() > deadline:
                raise RuntimeError("read %s: %d sentinels after 60 s" % (group, len(sentinels)))
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            v = m.value().decode()
            got.append({"p": m.partition(), "o": m.offset(), "v": v})
            if v.startswith("end-"):
                sentinels.add(m.partition())
    finally:
        c.close()
    return got


def main():
    cfg = json.loads(sys.argv[1])
    result = {"readCommitted": [], "readUncommitted": [], "ctp": {"transactions": 0, "processed": 0}, "error": None}
    try:
        run(cfg, result)
    except Exception:
        result["error"] = traceback.format_exc()
    print(json.dumps(result), flush=True)
    return 1 if result["error"] else 0


def run(cfg, result):
    parts = cfg["partitions"]
    p = Producer({
        "bootstrap.servers": cfg["bootstrap"],
        "transactional.id": "cf-txn",
        "client.id": "tusk-compat-confluent",
    })
    p.init_transactions(30)

    def send(tag, n):
        for part in range(parts):
            for i in range(n):
                p.produce(cfg["topic"], value=("%s-p%d-%d" % (tag, part, i)).encode(), partition=part)

    p.begin_transaction()
    send("c1", 10)
    p.commit_transaction(30)
    p.begin_transaction()
    send("a2", 10)
    p.flush(30)  # the aborted records reach the partitions
    p.abort_transaction(30)
    p.begin_transaction()
    for part in range(parts):
        p.produce(cfg["topic"], value=("end-p%d" % part).encode(), partition=part)
    p.commit_transaction(30)

    result["readCommitted"] = read_all(cfg, "cf-rc", "read_committed")
    result["readUncommitted"] = read_all(cfg, "cf-ru", "read_uncommitted")

    c = Consumer({
        "bootstrap.servers": cfg["bootstrap"],
        "group.id": cfg["group"],
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 200,
    })
    try:
        # An aborted transaction's offsets must not become the group's.
        p.begin_transaction()
        p.produce(cfg["output"], value=b"bogus", partition=0)
        ends = [TopicPartition(cfg["input"], part, cfg["inputPerPartition"]) for part in range(parts)]
        p.send_offsets_to_transaction(ends, c.consumer_group_metadata(), 30)
        p.flush(30)
        p.abort_transaction(30)

        c.subscribe([cfg["input"]])
        total = parts * cfg["inputPerPartition"]
        deadline = time.monotonic() + 90
        while result["ctp"]["processed"] < total:
            if time.monotonic() > deadline:
                raise RuntimeError("consume-transform-produce: %d of %d after 90 s" % (result["ctp"]["processed"], total))
            msgs = c.consume(num_messages=50, timeout=0.5)
            if not msgs:
                continue
            next_offsets = {}
            p.begin_transaction()
            for m in msgs:
                if m.error():
                    raise KafkaException(m.error())
                p.produce(cfg["output"], value=b"out-" + m.value(), partition=m.partition())
                next_offsets[m.partition()] = m.offset() + 1
            offsets = [TopicPartition(cfg["input"], part, off) for part, off in sorted(next_offsets.items())]
            p.send_offsets_to_transaction(offsets, c.consumer_group_metadata(), 30)
            p.commit_transaction(30)
            result["ctp"]["transactions"] += 1
            result["ctp"]["processed"] += len(msgs)
    finally:
        c.close()


if __name__ == "__main__":
    sys.exit(main())
