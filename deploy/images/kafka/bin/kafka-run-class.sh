#!/bin/bash
# As Kafka's own bin/kafka-run-class.sh: every jar in libs/ on the class path, KAFKA_HEAP_OPTS,
# KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_OPTS and KAFKA_LOG4J_OPTS honoured.
base=/opt/kafka
: "${KAFKA_HEAP_OPTS:=-Xmx256M}"
: "${KAFKA_LOG4J_OPTS:=-Dlog4j.configuration=file:$base/config/tools-log4j.properties}"
# shellcheck disable=SC2086
exec java $KAFKA_HEAP_OPTS ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -Djava.awt.headless=true} \
  $KAFKA_LOG4J_OPTS ${KAFKA_OPTS:-} -cp "$base/libs/*" "$@"
