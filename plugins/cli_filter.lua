-- slurm-ckpt cli_filter.lua: runs in sbatch, salloc and srun on submit hosts
-- (CliFilterPlugins=cli_filter/lua; this file next to slurm.conf).
--
-- For a job submitted with --checkpoint (the SPANK plugin then sets
-- SLURM_CKPT_REQUESTED in the submitting process; cli_filter cannot see SPANK
-- options), ask Slurm to send SIGUSR1 to the batch process LEAD_SECONDS before
-- the time limit, and at a preemption when slurm.conf has
-- SlurmctldParameters=preempt_send_user_signal: the launcher takes a final
-- checkpoint on it, so a preempted or timed-out job loses nothing.
-- A --signal the user gave is kept; every other job is left as submitted.

local LEAD_SECONDS = 60

function slurm_cli_setup_defaults(options, early_pass)
	return slurm.SUCCESS
end

function slurm_cli_pre_submit(options, offset)
	if os.getenv("SLURM_CKPT_REQUESTED") == nil then
		return slurm.SUCCESS
	end
	local chosen = options["signal"]
	if chosen == nil or chosen == "" or chosen == "0@0" then
		options["signal"] = "B:USR1@" .. LEAD_SECONDS
	end
	return slurm.SUCCESS
end

function slurm_cli_post_submit(offset, job_id, step_id)
	return slurm.SUCCESS
end
