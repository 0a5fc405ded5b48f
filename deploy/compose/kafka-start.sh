#!/bin/sh
# compose.yaml's Kafka: one KRaft node with the same security as the local runner and Kubernetes.
# Clients: TLS + SCRAM-SHA-512 on kafka:9092 (containers) and 127.0.0.1:$SAIS_KAFKA_HOST_PORT (the
# host), authorised by ACLs only; the controller listener takes mutual TLS from the broker's own
# certificate. The SCRAM users (the administrator, each service, the upstream publisher) are written
# into the log directory when it is formatted, from the passwords pki-init made in /kafka-pki.
# Only the standard layout of the Apache Kafka image is used (/opt/kafka/bin, /var/lib/kafka/data).
set -eu
umask 077
S=/kafka-pki
DATA=/var/lib/kafka/data
CONF=/tmp/sais-kafka/server.properties
mkdir -p /tmp/sais-kafka
pw() { tr -d '\n' < "$S/credentials/kafka-$1"; }
jaas="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$(pw admin)\";"
cat > "$CONF" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@kafka:9093
listeners=SASL_SSL://:9092,HOST://:19092,CONTROLLER://:9093
advertised.listeners=SASL_SSL://kafka:9092,HOST://127.0.0.1:${SAIS_KAFKA_HOST_PORT:-19092}
listener.security.protocol.map=SASL_SSL:SASL_SSL,HOST:SASL_SSL,CONTROLLER:SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$jaas
listener.name.host.scram-sha-512.sasl.jaas.config=$jaas
ssl.keystore.type=PEM
ssl.keystore.location=$S/kafka-broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$S/ca.pem
listener.name.controller.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+)\$/\$1/,DEFAULT
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:kafka-broker
allow.everyone.if.no.acl.found=false
log.dirs=$DATA
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
group.initial.rebalance.delay.ms=0
PROPS
# The healthcheck's client: the administrator over TLS.
cat > /tmp/sais-kafka/client.properties <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=$jaas
ssl.truststore.type=PEM
ssl.truststore.location=$S/ca.pem
PROPS
if [ ! -f "$DATA/meta.properties" ]; then
  set --
  for f in "$S"/credentials/kafka-*; do
    user=${f##*/kafka-}
    set -- "$@" --add-scram "SCRAM-SHA-512=[name=$user,password=$(pw "$user")]"
  done
  /opt/kafka/bin/kafka-storage.sh format -t "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" -c "$CONF" "$@"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$CONF"
