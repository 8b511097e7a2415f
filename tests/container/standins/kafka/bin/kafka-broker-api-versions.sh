#!/bin/sh
export KAFKA_HEAP_OPTS=-Xmx128m
exec /opt/kafka/bin/kafka-run-class.sh kafka.admin.BrokerApiVersionsCommand "$@"
