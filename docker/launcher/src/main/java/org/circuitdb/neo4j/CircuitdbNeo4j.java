package org.circuitdb.neo4j;

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.io.ByteUnit;
import org.neo4j.logging.Level;
import org.neo4j.logging.log4j.Log4jLogProvider;

/**
 * circuitdb's local Neo4j: an embedded Neo4j 5.26 community DBMS with the Bolt
 * connector on a loopback port, for machines without Docker.
 *
 * <pre>
 * java -jar circuitdb-neo4j-launcher.jar --port 7687 --data DIR [--auth] [--pagecache 128m]
 * </pre>
 *
 * <ul>
 *   <li>Binds Bolt to 127.0.0.1 only; no HTTP connector.</li>
 *   <li>{@code --data DIR} is the DBMS home: databases, transaction logs and logs live under it.</li>
 *   <li>{@code --auth} turns authentication on; user {@code neo4j}'s password is set from the
 *       environment variable {@code NEO4J_PASSWORD} (never from the command line).</li>
 *   <li>Prints one line {@code CIRCUITDB_NEO4J_READY bolt://127.0.0.1:PORT version=V auth=on|off}
 *       on stdout once Bolt accepts connections, or {@code CIRCUITDB_NEO4J_FAILED reason} and
 *       exits 1.</li>
 *   <li>SIGTERM (or SIGINT) runs a shutdown hook that shuts the DBMS down cleanly (checkpoint),
 *       then prints {@code CIRCUITDB_NEO4J_STOPPED}.</li>
 * </ul>
 */
public final class CircuitdbNeo4j {

    static final String HOST = "127.0.0.1";

    private CircuitdbNeo4j() {
    }

    /** Parsed command line. */
    record Options(int port, Path data, boolean auth, long pagecacheBytes) {
    }

    public static void main(String[] args) {
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        Options opts;
        try {
            opts = parse(args);
        } catch (IllegalArgumentException e) {
            fail(out, e.getMessage());
            return;
        }
        String password = System.getenv("NEO4J_PASSWORD");
        if (opts.auth() && (password == null || password.isEmpty())) {
            fail(out, "--auth needs the password in the environment variable NEO4J_PASSWORD");
            return;
        }

        DatabaseManagementService dbms;
        try {
            Files.createDirectories(opts.data());
            dbms = new DatabaseManagementServiceBuilder(opts.data())
                    .setUserLogProvider(new Log4jLogProvider(System.err, Level.INFO))
                    .setConfig(BoltConnector.enabled, true)
                    .setConfig(BoltConnector.listen_address, new SocketAddress(HOST, opts.port()))
                    .setConfig(BoltConnector.advertised_address, new SocketAddress(HOST, opts.port()))
                    .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                    .setConfig(GraphDatabaseSettings.default_listen_address, new SocketAddress(HOST))
                    .setConfig(GraphDatabaseSettings.auth_enabled, opts.auth())
                    .setConfig(GraphDatabaseSettings.pagecache_memory, opts.pagecacheBytes())
                    .setConfig(GraphDatabaseSettings.udc_enabled, false)
                    // Netty's default quiet period (per event loop group) adds ~10 s to every stop;
                    // the store is still checkpointed and closed cleanly after Bolt is down.
                    .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0)
                    .build();
        } catch (Throwable e) {
            fail(out, describe(e));
            return;
        }

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                dbms.shutdown();
                out.println("CIRCUITDB_NEO4J_STOPPED");
            } finally {
                stopped.countDown();
            }
        }, "circuitdb-neo4j-shutdown"));

        String version;
        try {
            GraphDatabaseService system = dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
            if (opts.auth()) {
                setPassword(system, password);
            }
            version = system.executeTransactionally(
                    "CALL dbms.components() YIELD versions RETURN versions[0] AS v",
                    Map.of(),
                    result -> String.valueOf(result.next().get("v")));
        } catch (Throwable e) {
            fail(out, describe(e));
            System.exit(1);  // runs the shutdown hook
            return;
        }

        out.println("CIRCUITDB_NEO4J_READY bolt://" + HOST + ":" + opts.port()
                + " version=" + version + " auth=" + (opts.auth() ? "on" : "off"));
        try {
            stopped.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Set user neo4j's password (no forced change); a no-op when it is already that password. */
    static void setPassword(GraphDatabaseService system, String password) {
        try {
            system.executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED",
                    Map.of("password", password));
        } catch (RuntimeException e) {
            String msg = String.valueOf(e.getMessage());
            if (!msg.contains("Old password and new password cannot be the same")) {
                throw e;
            }
            // Same password as last time: make sure no change is required, and carry on.
            system.executeTransactionally("ALTER USER neo4j SET PASSWORD CHANGE NOT REQUIRED");
        }
    }

    static Options parse(String[] args) {
        Integer port = null;
        Path data = null;
        boolean auth = false;
        long pagecache = ByteUnit.mebiBytes(128);
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--port" -> port = parsePort(value(args, ++i, a));
                case "--data" -> data = Path.of(value(args, ++i, a)).toAbsolutePath();
                case "--auth" -> auth = true;
                case "--pagecache" -> pagecache = parseSize(value(args, ++i, a));
                default -> throw new IllegalArgumentException("unknown option " + a
                        + "; use --port N --data DIR [--auth] [--pagecache 128m]");
            }
        }
        if (port == null || data == null) {
            throw new IllegalArgumentException("--port and --data are required");
        }
        return new Options(port, data, auth, pagecache);
    }

    private static String value(String[] args, int i, String option) {
        if (i >= args.length) {
            throw new IllegalArgumentException(option + " needs a value");
        }
        return args[i];
    }

    private static int parsePort(String s) {
        try {
            int p = Integer.parseInt(s);
            if (p < 1 || p > 65535) {
                throw new NumberFormatException();
            }
            return p;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--port must be 1-65535, got " + s);
        }
    }

    private static long parseSize(String s) {
        String t = s.trim().toLowerCase();
        long mult = 1;
        if (t.endsWith("g")) {
            mult = ByteUnit.gibiBytes(1);
        } else if (t.endsWith("m")) {
            mult = ByteUnit.mebiBytes(1);
        } else if (t.endsWith("k")) {
            mult = ByteUnit.kibiBytes(1);
        }
        String digits = mult == 1 ? t : t.substring(0, t.length() - 1);
        try {
            return Long.parseLong(digits) * mult;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--pagecache must look like 128m or 1g, got " + s);
        }
    }

    private static String describe(Throwable e) {
        StringBuilder sb = new StringBuilder();
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (sb.length() > 0) {
                sb.append(" <- ");
            }
            sb.append(t.getClass().getSimpleName()).append(": ").append(t.getMessage());
            if (t.getCause() == t) {
                break;
            }
        }
        return sb.toString().replace('\n', ' ');
    }

    private static void fail(PrintStream out, String reason) {
        out.println("CIRCUITDB_NEO4J_FAILED " + reason);
        out.flush();
        System.exit(1);
    }
}
