// Drives Portask with kafkajs: create a topic, produce keyed messages with headers
// (gzip-compressed), read the offsets back through the admin API. Prints JSON.
const { Kafka, CompressionTypes, logLevel } = require("kafkajs");

async function main() {
  const [broker, topic, countText] = process.argv.slice(2);
  const count = Number(countText);
  const kafka = new Kafka({ clientId: "portask-test", brokers: [broker], logLevel: logLevel.ERROR });
  const admin = kafka.admin();
  await admin.connect();
  const created = await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < count; i++) {
    messages.push({ key: `key-${i}`, value: `value-${i}`, partition: i % 2, headers: { idx: `${i}` } });
  }
  const acks = await producer.send({ topic, messages, acks: -1, compression: CompressionTypes.GZIP });
  const offsets = await admin.fetchTopicOffsets(topic);
  const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
  await producer.disconnect();
  await admin.disconnect();
  console.log(JSON.stringify({ created, acks, offsets, partitions: metadata.topics[0].partitions.length }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
