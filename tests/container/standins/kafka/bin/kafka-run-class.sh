#!/bin/sh
# kafka-run-class.sh CLASS ARGS: a JVM tuned to start fast (tools and broker).
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Djava.awt.headless=true -Dlog4j.configuration=file:/opt/kafka/bin/log4j.properties \
  ${KAFKA_OPTS:-} -cp '/opt/kafka/libs/*' "$@"
