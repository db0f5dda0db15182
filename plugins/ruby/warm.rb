# kiln's warm start for Ruby (worker/include/kiln/plugin.h, prestart),
# given to ruby with -e and started ahead of its job:
#
#   ruby -e WARM.RB
#
# It reads the job's envelope from stdin (sysread: nothing of the
# job's own stdin is buffered away), takes the job's environment and
# arguments, and runs the command the envelope names as a cold ruby would:
#   ruby /work/main.rb ARGS   the script, compiled from its file and run at
#                             the top level, with $0 and ARGV as a cold run
#                             has them; an uncaught exception's backtrace
#                             loses this file's frames, so it prints as a
#                             cold run's does, after the at_exit handlers;
#                             a syntax error prints as ruby prints it
#   ruby -e CODE ARGS         (kiln's runner, run.rb) CODE at the top level
# (No template forks it: Fiddle, Ruby's FFI, stays out of the image, as it
# would let a program read its runner's token; and kiln's library loaded
# as an extension instead leaves a forked ruby its template's timer pipes,
# which Ruby makes anew only when its pid changes: a forked job's pid is 2,
# as the template's was.)
# What it cannot make the same: `caller` at the script's top level names
# this file's frames, and the process's title is the script's path. Jobs
# that a cold ruby would treat differently from the start (RUBYOPT and the
# like, a locale, a #! line with switches, DATA after __END__) start cold:
# ruby.c, warm_ok.
-> do
  read = lambda do |n|
    b = ''.b
    while b.bytesize < n
      begin
        b << STDIN.sysread(n - b.bytesize)
      rescue EOFError
        exit!(0) # no job came: the sandbox is being discarded
      end
    end
    b
  end
  fields = read.call(read.call(4).unpack1('N')).split("\0", -1)
  argc = fields.shift.to_i
  argv = fields.shift(argc).map { |a| a.force_encoding(Encoding.find('locale')) }
  ENV.replace(fields.select { |kv| kv.include?('=') }.to_h { |kv| kv.split('=', 2) })
  if argv[1] == '-e'
    file = '-e'
    code = RubyVM::InstructionSequence.compile(argv[2], '-e', '-e', 1)
    ARGV.replace(argv[3..])
  else
    file = argv[1]
    ARGV.replace(argv[2..])
    begin
      code = RubyVM::InstructionSequence.compile_file(file)
    rescue SyntaxError => e
      STDERR.write(e.message)
      exit!(1)
    end
  end
  $0 = file
  below = caller(0).size + 1 # this frame, the one that called it, and eval
  begin
    code.eval
  rescue Exception => e # (re-raised)
    bt = e.backtrace
    e.set_backtrace(bt[0...-below]) if bt && bt.size > below && file != '-e'
    raise
  end
end.call
