# kiln's runner for an R run whose end is checked (the job key expect_end;
# worker/include/kiln/plugin.h, KILN_PLUGIN_ENDS), given to Rscript with -e:
#
#   Rscript -e RUN.R /work/main.R ARGS...
#
# The agent's token is taken before any of the program's code runs; the
# program is sourced into the global environment, as `Rscript FILE` runs
# it (commandArgs() answers as it would there), and the proof is written
# when source() returns. quit(), an error or a signal on the way: no
# proof; a `return()` at the program's top level is an error in R. What
# this cannot stop: R lets code walk the frames that called it
# (sys.frames()), and this runner's frame holds the token.
local({
  args <- commandArgs(trailingOnly = TRUE)
  file <- args[1]
  rest <- args[-1]
  token <- NULL
  if (file.exists("/tmp/.kiln-end/token")) {
    token <- readBin("/tmp/.kiln-end/token", "raw", 64L)
    unlink("/tmp/.kiln-end/token")
  }
  exec <- commandArgs(trailingOnly = FALSE)[1]
  assign("commandArgs", function(trailingOnly = FALSE) {
    if (trailingOnly) rest
    else c(exec, "--no-echo", "--no-restore", paste0("--file=", file), if (length(rest)) c("--args", rest))
  }, envir = globalenv())
  source(file, echo = FALSE)
  if (!is.null(token)) writeBin(token, "/tmp/.kiln-end/proof")
})
