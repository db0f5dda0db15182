/* libFuzzer: the job decoder, on any bytes. Seeds: schemas/vectors/job. */
#include <stddef.h>
#include <stdint.h>

#include "wire/job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kiln_job *job;
    char err[256];
    int r = kiln_job_decode(data, size, &job, err, sizeof(err));
    if (r == -22 && err[0] == '\0')
        __builtin_trap(); /* a rejection must say why */
    kiln_job_free(job);
    return 0;
}
