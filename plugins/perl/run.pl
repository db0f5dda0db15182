# kiln's runner for a Perl run whose end is checked (the job key
# expect_end; worker/include/kiln/plugin.h, KILN_PLUGIN_ENDS), given to
# perl with -e:
#
#   perl -e RUN.PL /work/main.pl ARGS...
#
# The agent's token is taken before any of the program's code is compiled
# and held in a lexical of a block the program's code cannot see (it is
# compiled, as an anonymous sub in package main, by a sub defined before
# that block). The proof is written when that sub returns. exit, die or a
# signal on the way: no proof. A `return` (or `goto`) in the program's
# top-level code would end it early: its compiled ops are looked through
# first (B), and one there means no proof. What this cannot stop: a
# program that walks the interpreter's own structures with B (as this
# runner does) can find the block's lexical. Its memory is not readable
# through /proc: the runner makes the process non-dumpable first.
sub __kiln_compile {
    return eval "package main;\nsub {\n#line 1 \"$_[1]\"\n$_[0]\n;\n}";
}

sub __kiln_returns_early {
    require B;
    my @ops = (B::svref_2object($_[0])->ROOT);
    while (my $op = shift @ops) {
        next unless $$op;
        return 1 if $op->name eq 'return' || $op->name eq 'goto';
        if ($op->flags & B::OPf_KIDS()) {
            for (my $k = $op->first; $$k; $k = $k->sibling) {
                push @ops, $k;
            }
        }
    }
    return 0;
}

{
    my $file = shift @ARGV;
    my $token;
    # this process non-dumpable: its memory is not the program's to read
    # through /proc/self/mem, nor a child's (prctl PR_SET_DUMPABLE 0; the
    # sandbox's filter refuses making it dumpable again)
    syscall(157, 4, 0, 0, 0, 0) if $^O eq 'linux' && do { require Config; $Config::Config{archname} =~ /^x86_64/ };
    if (open(my $t, '<:raw', '/tmp/.kiln-end/token')) {
        local $/;
        $token = <$t>;
        close $t;
        unlink '/tmp/.kiln-end/token';
    }
    open(my $in, '<:raw', $file) or die "kiln: $file: $!\n";
    my $src = do { local $/; <$in> };
    close $in;
    if ($src =~ s/^__(?:END|DATA)__[ \t]*\r?\n?(.*)\z//ms) { # what follows is the DATA file
        my $data = $1;
        open(main::DATA, '<', \$data);
    }
    $0 = $file;
    my $code = __kiln_compile($src, $file);
    unless ($code) {
        print STDERR $@;
        exit 255;
    }
    undef $token if __kiln_returns_early($code);
    $code->();
    if (defined $token && open(my $p, '>:raw', '/tmp/.kiln-end/proof')) {
        print $p $token;
        close $p;
    }
}
