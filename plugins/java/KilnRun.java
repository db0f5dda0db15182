/*
 * kiln's launcher for the java plugin, built into every Java job beside
 * the job's own source (plugins/java/java.c).
 *
 * It runs the program's main: the class -Dkiln.main names (the source's
 * public class), else the one class in the job's jar with a
 * public static void main(String[]). An exception out of main goes on as
 * the JVM reports one ("Exception in thread "main" ...", exit 1).
 *
 * A run whose end is checked (expect_end): it takes the agent's token
 * first, before any class of the program is initialised, keeps it in a
 * local variable of its own main (which neither reflection nor the program
 * can reach; the JVM refuses to be attached to), and writes the proof only
 * when the program's main returns. System.exit, an uncaught exception or a
 * signal on the way: no proof.
 */
import java.io.IOException;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.List;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;

public final class KilnRun {
    private KilnRun() {
    }

    public static void main(String[] args) throws Throwable {
        byte[] token = null;
        Path at = Paths.get("/tmp/.kiln-end/token");
        try {
            token = Files.readAllBytes(at);
            Files.delete(at);
        } catch (NoSuchFileException e) {
            token = null;
        }
        Method main = findMain();
        try {
            main.invoke(null, (Object) args);
        } catch (InvocationTargetException e) {
            throw e.getCause();
        }
        if (token != null) {
            Files.write(Paths.get("/tmp/.kiln-end/proof"), token, StandardOpenOption.CREATE_NEW,
                        StandardOpenOption.WRITE);
        }
    }

    private static Method mainOf(String name) throws ClassNotFoundException {
        Class<?> c = Class.forName(name, false, KilnRun.class.getClassLoader());
        try {
            Method m = c.getDeclaredMethod("main", String[].class);
            int mod = m.getModifiers();
            if (!Modifier.isStatic(mod) || m.getReturnType() != void.class)
                return null;
            m.setAccessible(true);
            return m;
        } catch (NoSuchMethodException e) {
            return null;
        }
    }

    private static Method findMain() throws IOException, URISyntaxException, ClassNotFoundException {
        String named = System.getProperty("kiln.main");
        if (named != null) {
            try {
                Method m = mainOf(named);
                if (m != null)
                    return m;
            } catch (ClassNotFoundException e) {
                /* in a package: found below */
            }
        }
        List<String> found = new ArrayList<>();
        Method only = null;
        Path jar = Paths.get(KilnRun.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        try (JarFile jf = new JarFile(jar.toFile())) {
            for (Enumeration<JarEntry> e = jf.entries(); e.hasMoreElements();) {
                String n = e.nextElement().getName();
                if (!n.endsWith(".class") || n.startsWith("KilnRun"))
                    continue;
                String name = n.substring(0, n.length() - 6).replace('/', '.');
                Method m = mainOf(name);
                if (m != null) {
                    found.add(name);
                    only = m;
                }
            }
        }
        if (found.size() == 1)
            return only;
        if (found.isEmpty())
            throw new IllegalStateException("kiln: no class of the program has a static void main(String[])");
        throw new IllegalStateException("kiln: several classes have a main method " + found
                                        + ": make the one to run public");
    }
}
