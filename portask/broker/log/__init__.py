"""The one log both protocols store records in (``record_log.RecordLog``), and the
stored formats it can hold: Kafka's RecordBatch v2 (``kafka_batch``, with the batch
codecs in ``compression``) and an AMQP message (``amqp_message``)."""
