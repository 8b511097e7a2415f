#!/bin/bash
# Like the official image: every KAFKA_<NAME> variable becomes a line of
# server.properties (NAME lower-cased, "___" -> "-", "__" -> "_", "_" -> "."),
# except the JVM option variables; the storage is formatted with CLUSTER_ID on
# first start; the broker runs as appuser (uid 1000).
set -euo pipefail
props=/opt/kafka/config/server.properties
: >"$props"
while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_LOG4J_OPTS | KAFKA_GC_LOG_OPTS | KAFKA_JMX_OPTS) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key=${name#KAFKA_}
  key=${key,,}
  key=${key//___/-}
  key=${key//__/@}
  key=${key//_/.}
  key=${key//@/_}
  printf '%s=%s\n' "$key" "$value" >>"$props"
done < <(env)
logdirs=$(sed -n 's/^log\.dirs=//p' "$props")
logdirs=${logdirs:-/tmp/kraft-combined-logs}
mkdir -p "${logdirs//,/ }"
chown -R appuser:appuser ${logdirs//,/ } /opt/kafka/config
as_app() { setpriv --reuid=appuser --regid=appuser --init-groups "$@"; }
if [ ! -f "${logdirs%%,*}/meta.properties" ]; then
  : "${CLUSTER_ID:?CLUSTER_ID is needed to format the storage}"
  as_app /opt/kafka/bin/kafka-run-class.sh kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$props" >&2
fi
exec setpriv --reuid=appuser --regid=appuser --init-groups \
  /opt/kafka/bin/kafka-run-class.sh kafka.Kafka "$props"
