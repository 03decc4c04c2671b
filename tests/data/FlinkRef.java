import org.apache.flink.runtime.state.KeyGroupRangeAssignment;
import org.apache.flink.runtime.state.KeyGroupRange;
import org.apache.flink.streaming.runtime.partitioner.RescalePartitioner;
import org.apache.flink.util.MathUtils;

public class FlinkRef {
    static void key(String kind, Object k, String repr) {
        int[][] cfg = {{128, 1}, {128, 2}, {128, 4}, {128, 7}, {256, 5}, {32768, 100}, {1000, 3}};
        StringBuilder sb = new StringBuilder(kind + "\t" + repr + "\t" + k.hashCode());
        for (int[] c : cfg) {
            sb.append("\t").append(KeyGroupRangeAssignment.assignToKeyGroup(k, c[0]));
            sb.append(",").append(KeyGroupRangeAssignment.assignKeyToParallelOperator(k, c[0], c[1]));
        }
        System.out.println(sb);
    }
    public static void main(String[] a) {
        int[] ints = {0, 1, -1, 7, 42, 1000, 123456789, Integer.MAX_VALUE, Integer.MIN_VALUE};
        for (int v : ints) key("int", v, Integer.toString(v));
        long[] longs = {0L, 1L, -1L, 42L, 1L << 32, -(1L << 40) + 5, Long.MAX_VALUE, Long.MIN_VALUE, 9876543210L};
        for (long v : longs) key("long", v, Long.toString(v));
        String[] strs = {"", "a", "hello", "flink", "key-17", "word count", "h\u00e9llo", "\u4e2d\u6587", "\uD83D\uDE00x", "The quick brown fox"};
        for (String s : strs) key("str", s, new java.math.BigInteger(1, s.getBytes(java.nio.charset.StandardCharsets.UTF_8)).toString(16) + ":" + s.length());
        double[] ds = {0.0, -0.0, 1.5, -2.25, 1e300, Double.NaN};
        for (double d : ds) key("double", d, Double.toString(d));
        key("bool", true, "true"); key("bool", false, "false");
        for (int p : new int[]{1, 2, 3, 10, 85, 86, 100, 1000, 20000, 30000})
            System.out.println("defaultmax\t" + p + "\t" + KeyGroupRangeAssignment.computeDefaultMaxParallelism(p));
        for (int[] c : new int[][]{{128, 3, 0}, {128, 3, 1}, {128, 3, 2}, {1000, 7, 6}, {10, 10, 9}}) {
            KeyGroupRange r = KeyGroupRangeAssignment.computeKeyGroupRangeForOperatorIndex(c[0], c[1], c[2]);
            System.out.println("range\t" + c[0] + "\t" + c[1] + "\t" + c[2] + "\t" + r.getStartKeyGroup() + "\t" + r.getEndKeyGroup());
        }
        for (int v : new int[]{0, 1, -1, 0x87654321, 0xffffffff})
            System.out.println("murmur\t" + v + "\t" + MathUtils.murmurHash(v));
        RescalePartitioner<Object> rp = new RescalePartitioner<>();
        rp.setup(3);
        StringBuilder sb = new StringBuilder("rescale3");
        for (int i = 0; i < 7; i++) sb.append("\t").append(rp.selectChannel(null));
        System.out.println(sb);
    }
}
