// Drives Warden with the PostgreSQL JDBC driver (pgjdbc), run by
// test/drivers.test.ts as a single-file program:
//   java -cp postgresql.jar JdbcCheck.java
// Settings come from the environment; each result is printed as one
// `key=value` line for the test to check.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class JdbcCheck {
  static void out(String key, Object value) {
    System.out.println(key + "=" + value);
  }

  static Connection connect(String user, String tokenVariable) throws SQLException {
    Properties p = new Properties();
    p.setProperty("user", user);
    p.setProperty("password", System.getenv(tokenVariable));
    p.setProperty("sslmode", "disable");
    p.setProperty("ApplicationName", "warden-jdbc-check");
    return DriverManager.getConnection(System.getenv("WARDEN_JDBC_URL"), p);
  }

  static String firstLine(String s) {
    return s == null ? "" : s.split("\n")[0];
  }

  public static void main(String[] args) throws Exception {
    try (Connection c = connect("demo", "WARDEN_TOKEN_READ")) {
      // Ten executions: from the fifth on (prepareThreshold) pgjdbc uses a named server-side statement.
      try (PreparedStatement ps = c.prepareStatement("SELECT name, ?::int * 2 AS twice FROM items WHERE id = ?")) {
        List<String> got = new ArrayList<>();
        for (int i = 1; i <= 10; i++) {
          ps.setInt(1, i);
          ps.setInt(2, i);
          try (ResultSet rs = ps.executeQuery()) {
            while (rs.next()) got.add(rs.getString(1) + ":" + rs.getInt(2));
          }
        }
        out("param", String.join(",", got));
      }
      try (Statement st = c.createStatement();
          ResultSet rs = st.executeQuery(
              "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'SELECT name, $1::int * 2%'")) {
        rs.next();
        out("server_prepared", rs.getInt(1));
      }

      // Many rows in one result, then the same rows fetched 7 at a time: inside a
      // transaction pgjdbc uses Execute with a row limit (PortalSuspended, then more).
      try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT id, name FROM items ORDER BY id")) {
        int n = 0;
        long sum = 0;
        String last = "";
        while (rs.next()) {
          n++;
          sum += rs.getInt(1);
          last = rs.getString(2);
        }
        out("rows", n + "," + sum + "," + last);
      }
      c.setAutoCommit(false);
      try (Statement st = c.createStatement()) {
        st.setFetchSize(7);
        try (ResultSet rs = st.executeQuery("SELECT id FROM items ORDER BY id")) {
          int n = 0;
          while (rs.next()) n++;
          out("fetched_in_batches", n);
        }
      }
      c.commit();
      c.setAutoCommit(true);

      // A read-only identity's DELETE is refused with 42501; the session stays usable.
      try (Statement st = c.createStatement()) {
        st.executeUpdate("DELETE FROM items WHERE id = 1");
        out("delete", "allowed");
      } catch (SQLException e) {
        out("delete_sqlstate", e.getSQLState());
        out("delete_message", firstLine(e.getMessage()));
      }
      try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM items WHERE id > ?")) {
        ps.setInt(1, 0);
        try (ResultSet rs = ps.executeQuery()) {
          rs.next();
          out("after_error", rs.getInt(1));
        }
      }
    }

    try (Connection c = connect("demo-admin", "WARDEN_TOKEN_ADMIN")) {
      c.setAutoCommit(false);
      try (PreparedStatement ins = c.prepareStatement("INSERT INTO notes (note) VALUES (?)")) {
        ins.setString(1, "jdbc rolled back");
        ins.executeUpdate();
        c.rollback();
        ins.setString(1, "jdbc committed");
        ins.executeUpdate();
        c.commit();
        // An error aborts the transaction: 25P02 until the rollback.
        ins.setString(1, "jdbc lost");
        ins.executeUpdate();
        try (Statement st = c.createStatement()) {
          st.executeQuery("SELECT 1 / 0");
        } catch (SQLException e) {
          out("tx_error", e.getSQLState());
        }
        try (Statement st = c.createStatement()) {
          st.executeQuery("SELECT 1");
        } catch (SQLException e) {
          out("tx_aborted", e.getSQLState());
        }
        c.rollback();
      }
      c.setAutoCommit(true);
      try (Statement st = c.createStatement();
          ResultSet rs = st.executeQuery("SELECT string_agg(note, ',' ORDER BY id) FROM notes WHERE note LIKE 'jdbc%'")) {
        rs.next();
        out("tx_notes", rs.getString(1));
      }
    }
    out("done", "yes");
  }
}
