#!/usr/bin/env bash
# Formats KRaft storage on first start (a fixed cluster id per data volume), renders the advertised listener, then
# execs the broker so that it receives SIGTERM directly.
set -euo pipefail
DATA=${KAFKA_DATA:-/var/lib/kafka/data}
CONFIG=/var/lib/kafka/server.properties
mkdir -p "$DATA"
sed -e "s|@ADVERTISED_HOST@|${KAFKA_ADVERTISED_HOST}|g" -e "s|@PORT@|${KAFKA_PORT}|g" -e "s|@DATA@|${DATA}|g" \
  /opt/kafka/config/server.properties >"$CONFIG"
JAVA=(java "-Xmx${KAFKA_HEAP}" -XX:+UseG1GC -Djava.awt.headless=true
      "-Dlog4j.configuration=file:/opt/kafka/config/log4j.properties" -cp "/opt/kafka/libs/*")
if [[ ! -f $DATA/meta.properties ]]; then
  CLUSTER_ID=${KAFKA_CLUSTER_ID:-$("${JAVA[@]}" kafka.tools.StorageTool random-uuid)}
  "${JAVA[@]}" kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$CONFIG"
fi
exec "${JAVA[@]}" kafka.Kafka "$CONFIG"
