// kiln's launcher for the csharp plugin, built into every C# job beside
// the job's own source (plugins/csharp/csharp.c), and the program's entry
// point (mcs -main:KilnRun).
//
// It runs the program's Main: the one static method named Main in the
// program's types (with string[] or no parameters; an int it returns is
// the exit code). A failed Debug.Assert (the code is built with DEBUG)
// prints its message and where it failed on stderr and exits 1, as a
// failed assertion ends a program elsewhere (mono alone would print and
// go on, exit 0). An exception out of Main goes on as mono reports one.
//
// A run whose end is checked (expect_end): the agent's token is taken
// first, kept in a local variable of this Main (which reflection cannot
// read), and the proof is written only when the program's Main returns 0.
// Environment.Exit, an exception or a signal on the way: no proof.
using System;
using System.Diagnostics;
using System.IO;
using System.Reflection;
using System.Runtime.ExceptionServices;

public static class KilnRun
{
    sealed class AssertFails : TraceListener
    {
        public override void Write(string message) { Console.Error.Write(message); }
        public override void WriteLine(string message) { Console.Error.WriteLine(message); }
        public override void Fail(string message, string detail)
        {
            Console.Out.Flush();
            Console.Error.WriteLine("Debug.Assert failed" + (string.IsNullOrEmpty(message) ? "" : ": " + message));
            Console.Error.WriteLine(new StackTrace(2, true).ToString());
            Console.Error.Flush();
            Environment.Exit(1);
        }
    }

    // Trace.Listeners reads mono's machine.config (XML) first: 55 ms of a
    // 40 ms program here. So the listener list is set in place, with the
    // settings marked read (their defaults are what a job gets anyway);
    // where mono's types differ, the slow way.
    static void ListenForAsserts()
    {
        const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Static;
        Type ti = typeof(Trace).Assembly.GetType("System.Diagnostics.TraceInternal");
        FieldInfo read = ti == null ? null : ti.GetField("settingsInitialized", Private);
        FieldInfo list = ti == null ? null : ti.GetField("listeners", Private);
        ConstructorInfo make = typeof(TraceListenerCollection).GetConstructor(
            BindingFlags.NonPublic | BindingFlags.Instance, null, Type.EmptyTypes, null);
        if (read == null || list == null || make == null || read.FieldType != typeof(bool)) {
            Trace.Listeners.Clear();
            Trace.Listeners.Add(new AssertFails());
            return;
        }
        read.SetValue(null, true);
        TraceListenerCollection listeners = (TraceListenerCollection)make.Invoke(null);
        listeners.Add(new AssertFails());
        list.SetValue(null, listeners);
    }

    static MethodInfo FindMain()
    {
        MethodInfo found = null;
        foreach (Type t in Assembly.GetExecutingAssembly().GetTypes()) {
            if (t == typeof(KilnRun) || t.DeclaringType == typeof(KilnRun))
                continue;
            foreach (MethodInfo m in t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic)) {
                ParameterInfo[] p = m.GetParameters();
                if (m.Name != "Main" || m.IsGenericMethod || p.Length > 1 ||
                    (p.Length == 1 && p[0].ParameterType != typeof(string[])))
                    continue;
                if (found != null)
                    throw new InvalidOperationException("kiln: more than one Main: " + found.DeclaringType + ", " + t);
                found = m;
            }
        }
        if (found == null)
            throw new InvalidOperationException("kiln: the program has no static Main method");
        return found;
    }

    public static int Main(string[] args)
    {
        byte[] token = null;
        if (File.Exists("/tmp/.kiln-end/token")) try { // no exception to throw when there is none (ms in mono)
            token = File.ReadAllBytes("/tmp/.kiln-end/token");
            File.Delete("/tmp/.kiln-end/token");
        } catch (IOException) {
            token = null;
        } catch (UnauthorizedAccessException) {
            token = null;
        }
        ListenForAsserts();
        MethodInfo main = FindMain();
        object r = null;
        try {
            r = main.Invoke(null, main.GetParameters().Length == 0 ? null : new object[] { args });
        } catch (TargetInvocationException e) {
            ExceptionDispatchInfo.Capture(e.InnerException).Throw();
        }
        int code = r is int ? (int)r : 0;
        Console.Out.Flush();
        if (code == 0 && token != null) {
            using (FileStream f = new FileStream("/tmp/.kiln-end/proof", FileMode.CreateNew, FileAccess.Write))
                f.Write(token, 0, token.Length);
        }
        return code;
    }
}
