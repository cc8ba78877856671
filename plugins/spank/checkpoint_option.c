/*
 * SPANK plugin: `--checkpoint=<interval>` for sbatch, salloc and srun.
 *
 * Submit side (allocator/local context): the option's value is checked with
 * the grammar of slurm_ckpt/intervals.py (interval.c); a bad value stops the
 * submission with a message naming the option and the accepted forms. A good
 * one is handed to the controller as CKPT_INTERVAL=<seconds> with
 * spank_job_control_setenv, where job_submit.lua reads it from spank_job_env.
 *
 * In sbatch itself the plugin also sets SLURM_CKPT_REQUESTED=<seconds> in its
 * own environment, for plugins/cli_filter.lua (which runs after option parsing
 * and cannot see SPANK options) to ask Slurm for a warning signal.
 *
 * Job side (remote context): the job gets SLURM_CHECKPOINT_INTERVAL=<seconds>.
 *
 * `--checkpoint-no-chain` (with --checkpoint only) opts the job out of
 * walltime chaining: CKPT_NO_CHAIN=1 for job_submit.lua, which tags the job.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <slurm/spank.h>

#include "interval.h"

SPANK_PLUGIN(slurm_ckpt, 1);

/* Read by plugins/job_submit.lua (spank_job_env) and prolog/epilog (SPANK_CKPT_INTERVAL). */
#define CONTROL_VAR "CKPT_INTERVAL"
#define JOB_VAR "SLURM_CHECKPOINT_INTERVAL"
/* Read by plugins/cli_filter.lua in the submitting process. */
#define SUBMIT_VAR "SLURM_CKPT_REQUESTED"
#define NO_CHAIN_VAR "CKPT_NO_CHAIN"

static long interval_seconds;
static int no_chain;

static int checkpoint_cb(int val, const char *optarg, int remote);
static int no_chain_cb(int val, const char *optarg, int remote);

static struct spank_option checkpoint_option = {
	"checkpoint",
	"<interval>",
	"checkpoint with CRIU every <interval>, e.g. 30m",
	1,
	0,
	checkpoint_cb,
};

static struct spank_option no_chain_option = {
	"checkpoint-no-chain",
	NULL,
	"no requeue past the time limit (walltime chaining)",
	0,
	0,
	no_chain_cb,
};

/* Copy `text` for a message: at most 40 bytes, non-printable bytes shown as '?'. */
static void printable(const char *text, char *out, size_t size)
{
	size_t i;

	for (i = 0; text[i] != '\0' && i + 4 < size && i < 40; i++) {
		unsigned char c = (unsigned char)text[i];
		out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (text[i] != '\0' && i + 4 <= size) {
		memcpy(out + i, "...", 3);
		i += 3;
	}
	out[i] = '\0';
}

static int checkpoint_cb(int val, const char *optarg, int remote)
{
	const char *reason = NULL;
	char shown[48];
	long seconds;

	(void)val;
	if (ckpt_parse_interval(optarg, &seconds, &reason) != 0) {
		printable(optarg ? optarg : "", shown, sizeof(shown));
		slurm_error("invalid --checkpoint='%s': %s%suse %s", shown, reason ? reason : "",
			    reason ? "; " : "", CKPT_ACCEPTED_FORMS);
		return -1;
	}
	interval_seconds = seconds;
	/* sbatch only: an srun inside the job sees the job's options again, and
	 * srun has no --signal=B: (cli_filter.lua would make it print an error). */
	if (!remote && spank_context() == S_CTX_ALLOCATOR) {
		char value[32];

		snprintf(value, sizeof(value), "%ld", seconds);
		setenv(SUBMIT_VAR, value, 1);
	}
	return 0;
}

static int no_chain_cb(int val, const char *optarg, int remote)
{
	(void)val;
	(void)optarg;
	(void)remote;
	no_chain = 1;
	return 0;
}

int slurm_spank_init(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	if (spank_option_register(sp, &checkpoint_option) != ESPANK_SUCCESS ||
	    spank_option_register(sp, &no_chain_option) != ESPANK_SUCCESS) {
		slurm_error("slurm_ckpt: cannot register --checkpoint");
		return -1;
	}
	return 0;
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
	spank_context_t ctx = spank_context();
	char value[32];
	spank_err_t rc;

	(void)ac;
	(void)av;
	if (ctx != S_CTX_ALLOCATOR && ctx != S_CTX_LOCAL)
		return 0;
	if (no_chain && interval_seconds <= 0) {
		slurm_error("--checkpoint-no-chain applies to checkpointed jobs: add "
			    "--checkpoint=<interval> or drop it");
		return -1;
	}
	if (interval_seconds <= 0)
		return 0;
	snprintf(value, sizeof(value), "%ld", interval_seconds);
	rc = spank_job_control_setenv(sp, CONTROL_VAR, value, 1);
	if (rc == ESPANK_SUCCESS && no_chain)
		rc = spank_job_control_setenv(sp, NO_CHAIN_VAR, "1", 1);
	if (rc != ESPANK_SUCCESS) {
		/* srun inside an existing allocation cannot change the job. */
		slurm_error("--checkpoint applies to new jobs only (sbatch, salloc, srun "
			    "outside an allocation): %s",
			    spank_strerror(rc));
		return -1;
	}
	return 0;
}

int slurm_spank_user_init(spank_t sp, int ac, char **av)
{
	char value[32];

	(void)ac;
	(void)av;
	if (interval_seconds <= 0 || spank_remote(sp) != 1)
		return 0;
	/* Only for the submitting sbatch: a job that submits jobs must not pass it on. */
	spank_unsetenv(sp, SUBMIT_VAR);
	snprintf(value, sizeof(value), "%ld", interval_seconds);
	if (spank_setenv(sp, JOB_VAR, value, 1) != ESPANK_SUCCESS)
		slurm_error("slurm_ckpt: cannot set %s", JOB_VAR);
	return 0;
}
