"""The broker's configuration text: ``server.properties`` with its JAAS lines, and the logging flag."""

from __future__ import annotations

from pathlib import Path
from typing import Final

#: The client listeners, then the controller's; a broker's ports are one block in this order.
LISTENERS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL", "CONTROLLER")
#: The SASL super user every broker knows (its password is random per run folder).
SASL_USERNAME: Final = "kwt-user"
#: Ordinary SASL users, with the same password: Kafka's ACLs apply to them (tests of per-caller credentials).
ACL_USERS: Final = ("kwt-alice", "kwt-bob")
#: Kafka's own authorizer is on. A resource no ACL names stays open to everyone, and the super users
#: (the PLAINTEXT, SSL-without-certificate and controller connections are ANONYMOUS) pass every check, so
#: only resources a test gives ACLs to are guarded, and only for the ordinary users and certificate holders.
AUTHORIZER: Final = (
    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "allow.everyone.if.no.acl.found=true",
    f"super.users=User:ANONYMOUS;User:{SASL_USERNAME}",
)

#: Logging for the 3.9 line (log4j 1 syntax): INFO, with the chattiest loggers at WARN.
LOG4J1: Final = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""

#: The same logging for the 4 line, which reads log4j 2 syntax.
LOG4J2: Final = """\
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def _jaas_lines(listener: str, password: str) -> list[str]:
    """Per-listener JAAS settings: PLAIN lists every user; SCRAM reads the credentials formatted into storage."""
    lower = listener.lower()
    users = " ".join(f'user_{name}="{password}"' for name in (SASL_USERNAME, *ACL_USERS))
    plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{SASL_USERNAME}" password="{password}" {users};'
    )
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return [
        f"listener.name.{lower}.plain.sasl.jaas.config={plain}",
        f"listener.name.{lower}.scram-sha-256.sasl.jaas.config={scram}",
        f"listener.name.{lower}.scram-sha-512.sasl.jaas.config={scram}",
    ]


def server_properties(
    ports: dict[str, int], data: Path, certs: dict[str, Path], store_password: str, sasl_password: str
) -> str:
    """The ``server.properties`` of a single KRaft node bound to loopback with every listener of :data:`LISTENERS`."""

    def addr(name: str) -> str:
        return f"{name}://127.0.0.1:{ports[name]}"

    client = [name for name in LISTENERS if name != "CONTROLLER"]
    lines = [
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{ports['CONTROLLER']}",
        "controller.listener.names=CONTROLLER",
        "listeners=" + ",".join(addr(name) for name in LISTENERS),
        "advertised.listeners=" + ",".join(addr(name) for name in client),
        "listener.security.protocol.map=" + ",".join(f"{n}:{n}" for n in client) + ",CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data}",
        "num.partitions=1",
        # A single node: every internal topic has one replica.
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        # Tests must create their topics; a read must never create one.
        "auto.create.topics.enable=false",
        "delete.topic.enable=true",
        # No retention by time: tests write records stamped years ago (fixed timestamps), and a
        # retention check (every 5 min) deleted them, active segment and all, while a test ran.
        "log.retention.ms=-1",
        *AUTHORIZER,
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        *_jaas_lines("SASL_PLAINTEXT", sasl_password),
        *_jaas_lines("SASL_SSL", sasl_password),
        f"ssl.keystore.location={certs['keystore']}",
        "ssl.keystore.type=PKCS12",
        f"ssl.keystore.password={store_password}",
        f"ssl.key.password={store_password}",
        f"ssl.truststore.location={certs['truststore']}",
        "ssl.truststore.type=PKCS12",
        f"ssl.truststore.password={store_password}",
        # Clients may present a certificate (mutual TLS) but need not.
        "listener.name.ssl.ssl.client.auth=requested",
    ]
    return "\n".join(lines) + "\n"


def logging_flag(line: str, run: Path) -> str:
    """Write the logging config ``line``'s broker reads into ``run``; return the JVM flag naming it."""
    if line == "3.9":
        path = run / "log4j.properties"
        path.write_text(LOG4J1)
        return f"-Dlog4j.configuration=file:{path}"
    path = run / "log4j2.properties"
    path.write_text(LOG4J2)
    return f"-Dlog4j2.configurationFile={path}"
