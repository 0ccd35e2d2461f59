"""Create one topic with confluent-kafka's AdminClient, as a user would.

Driven by TestClusterControllerKillAdmin (cluster_controller_test.go):

    python3 confluent_create_topic.py BOOTSTRAP TOPIC PARTITIONS BUDGET_SECONDS

After importing the client it prints {"ready": true} and waits for one line
on stdin; the test sends it right after killing the cluster's controller.
Only then is the AdminClient created (bootstrapped with BOOTSTRAP alone), and
it asks for TOPIC with PARTITIONS partitions and the broker's default
replication factor. A failed attempt is repeated (a user's retry) until the
topic exists or BUDGET_SECONDS have passed since the client was created; a
TOPIC_ALREADY_EXISTS after a failed attempt counts as success (that attempt
committed). The last line printed is one JSON object:

    {"created_at": <unix time the client was created>,
     "elapsed": <seconds from client creation to success or giving up>,
     "attempts": n, "error": null or the last error}
"""

import json
import sys
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    partitions, budget = int(sys.argv[3]), float(sys.argv[4])
    print(json.dumps({"ready": True}), flush=True)
    if not sys.stdin.readline():
        return 2  # the test went away
    created_at = time.time()
    start = time.monotonic()
    admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": "tusk-compat-confluent"})
    attempts, error = 0, None
    while True:
        left = budget - (time.monotonic() - start)
        if left <= 0:
            break
        attempts += 1
        futures = admin.create_topics([NewTopic(topic, partitions)], request_timeout=left)
        try:
            futures[topic].result(timeout=left + 1)
            error = None
            break
        except KafkaException as e:
            err = e.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS and attempts > 1:
                error = None
                break
            error = str(err)
        except Exception as e:  # the future's own timeout
            error = "%s: %s" % (type(e).__name__, e)
        time.sleep(0.05)
    elapsed = time.monotonic() - start
    print(json.dumps({"created_at": created_at, "elapsed": elapsed, "attempts": attempts, "error": error}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
