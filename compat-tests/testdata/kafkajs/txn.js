// kafkajs 2.2.4 transactions against tusk, driven by TestTxnKafkajs
// (compat-tests/txn_clients_test.go):
//
//     node txn.js '{"brokers":["127.0.0.1:port"],"topic":"...","input":"...","output":"...","partitions":3,"inputPerPartition":20}'
//
// 1. A transactional producer (transactionalId, idempotent,
//    maxInFlightRequests 1) commits a transaction of 10 records to each of
//    the topic's partitions (c1-p<P>-<i>), aborts one of 10 more to each
//    (a2-p<P>-<i>), and commits one sentinel per partition (end-p<P>).
// 2. A consumer with readUncommitted:false and one with readUncommitted:true
//    read the topic from the beginning until they have seen every sentinel.
// 3. Consume-transform-produce: first a transaction that writes "bogus" to
//    the output and sends the input's end offsets for the group, aborted;
//    then a consumer of the group (autoCommit off) turns each batch of the
//    input into one transaction: out-<value> to the same partition of the
//    output and sendOffsets(lastOffset+1), committed, until every input
//    record was processed.
//
// The last line on stdout is one JSON object: {"readCommitted": [...],
// "readUncommitted": [...], "ctp": {...}, "error": null or a message}, each
// record as {"p": partition, "o": offset, "v": value}. kafkajs logs go to
// stderr.
'use strict'

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'
const { Kafka, logLevel } = require('kafkajs')

const cfg = JSON.parse(process.argv[2])
const result = { readCommitted: [], readUncommitted: [], ctp: { transactions: 0, processed: 0 }, error: null }

const stderrLogger = () => ({ namespace, label, log }) => {
  process.stderr.write(JSON.stringify(Object.assign({ level: label, namespace }, log)) + '\n')
}

const kafka = new Kafka({
  clientId: 'tusk-compat-kafkajs',
  brokers: cfg.brokers,
  logLevel: logLevel.WARN,
  logCreator: stderrLogger,
})

function withDeadline (what, ms, promise) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

// readAll reads cfg.topic from the beginning with a new group until every
// partition's sentinel was seen.
async function readAll (groupId, readUncommitted) {
  const consumer = kafka.consumer({ groupId, readUncommitted, maxWaitTimeInMs: 200 })
  const got = []
  const sentinels = new Set()
  await consumer.connect()
  try {
    await consumer.subscribe({ topic: cfg.topic, fromBeginning: true })
    await withDeadline(`read ${groupId}`, 60000, new Promise((resolve, reject) => {
      consumer.on(consumer.events.CRASH, e => reject(e.payload.error))
      consumer.run({
        eachMessage: async ({ partition, message }) => {
          const v = message.value.toString()
          got.push({ p: partition, o: Number(message.offset), v })
          if (v.startsWith('end-')) {
            sentinels.add(partition)
            if (sentinels.size === cfg.partitions) resolve()
          }
        },
      }).catch(reject)
    }))
  } finally {
    await consumer.disconnect()
  }
  return got
}

async function main () {
  const producer = kafka.producer({ transactionalId: 'kjs-txn', idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  try {
    const messages = (tag, n) => {
      const out = []
      for (let p = 0; p < cfg.partitions; p++) {
        for (let i = 0; i < n; i++) out.push({ partition: p, value: `${tag}-p${p}-${i}` })
      }
      return out
    }
    let txn = await producer.transaction()
    await txn.send({ topic: cfg.topic, messages: messages('c1', 10) })
    await txn.commit()
    txn = await producer.transaction()
    await txn.send({ topic: cfg.topic, messages: messages('a2', 10) })
    await txn.abort()
    txn = await producer.transaction()
    const ends = []
    for (let p = 0; p < cfg.partitions; p++) ends.push({ partition: p, value: `end-p${p}` })
    await txn.send({ topic: cfg.topic, messages: ends })
    await txn.commit()

    result.readCommitted = await readAll('kjs-rc', false)
    result.readUncommitted = await readAll('kjs-ru', true)

    // Consume-transform-produce. The aborted transaction's offsets must
    // not become the group's.
    const endOffsets = []
    for (let p = 0; p < cfg.partitions; p++) endOffsets.push({ partition: p, offset: String(cfg.inputPerPartition) })
    txn = await producer.transaction()
    await txn.send({ topic: cfg.output, messages: [{ partition: 0, value: 'bogus' }] })
    await txn.sendOffsets({ consumerGroupId: cfg.group, topics: [{ topic: cfg.input, partitions: endOffsets }] })
    await txn.abort()

    const consumer = kafka.consumer({ groupId: cfg.group, readUncommitted: false, maxWaitTimeInMs: 200 })
    await consumer.connect()
    try {
      await consumer.subscribe({ topic: cfg.input, fromBeginning: true })
      const total = cfg.partitions * cfg.inputPerPartition
      await withDeadline('consume-transform-produce', 90000, new Promise((resolve, reject) => {
        consumer.on(consumer.events.CRASH, e => reject(e.payload.error))
        consumer.run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            if (batch.messages.length === 0) return
            const t = await producer.transaction()
            try {
              await t.send({
                topic: cfg.output,
                messages: batch.messages.map(m => ({ partition: batch.partition, value: 'out-' + m.value.toString() })),
              })
              await t.sendOffsets({
                consumerGroupId: cfg.group,
                topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: String(Number(batch.lastOffset()) + 1) }] }],
              })
              await t.commit()
            } catch (e) {
              if (t.isActive()) await t.abort()
              reject(e)
              throw e
            }
            result.ctp.transactions++
            result.ctp.processed += batch.messages.length
            if (result.ctp.processed >= total) resolve()
          },
        }).catch(reject)
      }))
    } finally {
      await consumer.disconnect()
    }
  } finally {
    await producer.disconnect()
  }
}

main().catch(e => {
  result.error = String(e && e.stack ? e.stack : e)
}).finally(() => {
  process.stdout.write(JSON.stringify(result) + '\n')
  process.exit(result.error ? 1 : 0)
})
