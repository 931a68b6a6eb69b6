import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.text.ParseException;
import java.util.Date;
import java.util.TimeZone;

import org.quartz.CronExpression;

/**
 * Differential-test oracle for cronhook's Quartz cron port.
 *
 * Usage: java -cp quartz.jar:. QuartzOracle [timeout-ms]
 *
 * Reads lines "<zone>\t<start epoch millis>\t<count>\t<expression>" from stdin and prints one
 * line per input line:
 *   OK\t<ms>,<ms>,...   the next `count` fire times (each getTimeAfter of the previous one,
 *                       stopping early at null; may be empty)
 *   ERR\t<message>      Quartz rejects the expression (ParseException)
 *   EXC\t<message>      Quartz accepts the expression but getTimeAfter throws
 *   BADZONE\t<zone>     the zone id is unknown to Java
 *   HANG\t              getTimeAfter did not return within a few seconds (Quartz loops forever)
 * The expression is everything after the third tab (it may contain tabs and spaces).
 */
public class QuartzOracle {
    public static void main(String[] args) throws Exception {
        if (args.length > 0) {
            timeoutMs = Long.parseLong(args[0]);
        }
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        BufferedWriter out = new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            out.write(evaluateWithTimeout(line));
            out.write('\n');
        }
        out.flush();
    }

    /**
     * Quartz's getTimeAfter can loop forever on some inputs (DST corner cases), so each line
     * runs on its own thread and is abandoned (Thread.stop) after a few seconds: "HANG".
     */
    @SuppressWarnings({"deprecation", "removal"})
    private static String evaluateWithTimeout(String line) throws InterruptedException {
        String[] result = new String[1];
        Thread worker = new Thread(() -> result[0] = evaluate(line));
        worker.setDaemon(true);
        worker.start();
        worker.join(timeoutMs);
        if (worker.isAlive()) {
            try {
                worker.stop();
                worker.join(1000);
            } catch (UnsupportedOperationException e) {
                // Java 20+: the (daemon) thread keeps spinning until the JVM exits.
            }
            return "HANG\t";
        }
        return result[0];
    }

    /** Per-line time limit in milliseconds; the first argument overrides it. */
    private static long timeoutMs = 3000;

    private static String evaluate(String line) {
        String[] parts = line.split("\t", 4);
        if (parts.length < 4) {
            return "BADLINE\t" + clean(line);
        }
        String zone = parts[0];
        TimeZone tz = TimeZone.getTimeZone(zone);
        if (!tz.getID().equals(zone)) {
            return "BADZONE\t" + clean(zone);
        }
        long start = Long.parseLong(parts[1]);
        int count = Integer.parseInt(parts[2]);
        String expr = unescape(parts[3]);

        CronExpression ce;
        try {
            ce = new CronExpression(expr);
        } catch (ParseException e) {
            return "ERR\t" + clean(e.getMessage());
        } catch (Throwable e) {
            // Not a ParseException: Quartz would propagate this to the caller.
            return "ERR\t" + clean(e.toString());
        }
        ce.setTimeZone(tz);

        StringBuilder sb = new StringBuilder("OK\t");
        Date at = new Date(start);
        try {
            for (int i = 0; i < count; i++) {
                Date next = ce.getTimeAfter(at);
                if (next == null) {
                    break;
                }
                if (i > 0) {
                    sb.append(',');
                }
                sb.append(next.getTime());
                at = next;
            }
        } catch (Throwable e) {
            return "EXC\t" + clean(e.toString());
        }
        return sb.toString();
    }

    /** The expression field escapes backslash, tab, newline and CR so that one line is one case. */
    private static String unescape(String s) {
        StringBuilder sb = new StringBuilder(s.length());
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '\\' && i + 1 < s.length()) {
                char n = s.charAt(++i);
                switch (n) {
                    case 't': sb.append('\t'); break;
                    case 'n': sb.append('\n'); break;
                    case 'r': sb.append('\r'); break;
                    default: sb.append(n); break;
                }
            } else {
                sb.append(c);
            }
        }
        return sb.toString();
    }

    private static String clean(String s) {
        return s == null ? "" : s.replace('\t', ' ').replace('\n', ' ').replace('\r', ' ');
    }
}
