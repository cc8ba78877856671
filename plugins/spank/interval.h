/*
 * Checkpoint intervals: text -> seconds. Pure C, no Slurm headers.
 *
 * The same grammar as slurm_ckpt/intervals.py; both are checked against
 * tests/data/interval_vectors.tsv so they accept exactly the same texts.
 */
#ifndef SLURM_CKPT_INTERVAL_H
#define SLURM_CKPT_INTERVAL_H

#define CKPT_MAX_INTERVAL_SECONDS (365L * 24 * 3600)
#define CKPT_MAX_INPUT_LENGTH 32

/* Keep in step with ACCEPTED_FORMS in slurm_ckpt/intervals.py. */
#define CKPT_ACCEPTED_FORMS                                                        \
	"a duration like 90s, 30m, 1h30m, 2d or a Slurm time like MM, MM:SS, "     \
	"HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (greater than 0, at most 365 days)"

/*
 * Parse `text` (NUL-terminated). On success store the number of seconds in
 * *seconds and return 0. On failure return -1 and, when `reason` is not NULL,
 * point *reason at a static one-line explanation.
 */
int ckpt_parse_interval(const char *text, long *seconds, const char **reason);

#endif
