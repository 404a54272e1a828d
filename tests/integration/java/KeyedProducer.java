// Writes one record per key with the Java client's own default partitioner, and prints
// "index partition offset" per record (the index of its key among the arguments, from 0): the reference the proxy's keyed records are checked against.
// Run with the broker's jars on the class path (they include kafka-clients):
//   java -cp 'JARS/*' KeyedProducer.java BOOTSTRAP TOPIC KEY...
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class KeyedProducer {
    public static void main(String[] args) throws Exception {
        Properties config = new Properties();
        config.put("bootstrap.servers", args[0]);
        config.put("acks", "all");
        config.put("key.serializer", ByteArraySerializer.class.getName());
        config.put("value.serializer", ByteArraySerializer.class.getName());
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(config)) {
            for (int i = 2; i < args.length; i++) {
                byte[] key = args[i].getBytes(StandardCharsets.UTF_8);
                ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(args[1], key, "java".getBytes(StandardCharsets.UTF_8));
                RecordMetadata written = producer.send(record).get();
                System.out.println((i - 2) + " " + written.partition() + " " + written.offset());
            }
        }
    }
}
