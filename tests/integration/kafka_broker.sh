#!/bin/sh
# Development helper: start a single-node KRaft Kafka broker on loopback in a
# temp dir (not used by the test suite; the stack script starts the real one).
#   tests/integration/kafka_broker.sh PORT [CONTROLLER_PORT]  -> prints the dir; log in DIR/kafka.log
set -eu
PORT=${1:-19092}
CPORT=${2:-$((PORT + 1))}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LIBS=${KAFKA_LIBS:-$ROOT/.cache/kafka-3.7.1/libs}
DIR=$(mktemp -d /tmp/wy-kafka.XXXXXX)
cat >"$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DIR/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
num.partitions=3
PROPS
java -cp "$LIBS/*" kafka.tools.StorageTool format -t "$(java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null)" \
    -c "$DIR/server.properties" >"$DIR/format.log" 2>&1
nohup java -Xmx512m -cp "$LIBS/*" kafka.Kafka "$DIR/server.properties" >"$DIR/kafka.log" 2>&1 &
echo $! >"$DIR/pid"
echo "$DIR"
