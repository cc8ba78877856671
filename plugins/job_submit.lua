-- slurm-ckpt job_submit.lua: prepares the jobs that asked for --checkpoint.
--
-- Installed as job_submit.lua next to slurm.conf (JobSubmitPlugins=lua).
-- The SPANK plugin (spank/checkpoint_option.c) has already validated the
-- interval and hands it over as CKPT_INTERVAL=<seconds> in spank_job_env.
-- For such a job this script
--   * makes the launcher the batch script's interpreter, keeping the original
--     one as its argument: "#!/bin/bash -l" becomes
--     "#!<launcher> /bin/bash -l" (the kernel hands the launcher
--     "/bin/bash -l" as ONE argument, then the script path);
--   * forces requeue=1, so a failed node or preemption requeues the job;
--   * adds the tag "slurm-ckpt:interval=<seconds>" to admin_comment, keeping
--     what was there (the service finds checkpointed jobs by this tag), and
--     "slurm-ckpt:no-chain" for --checkpoint-no-chain (CKPT_NO_CHAIN=1);
-- and refuses a checkpointed job the product cannot serve. Every other job
-- is left exactly as submitted.
--
-- Settings: /etc/slurm/slurm-ckpt-submit.conf ($SLURM_CKPT_SUBMIT_CONF
-- overrides the path), "key = value" lines, '#' comments:
--   launcher = /opt/slurm-ckpt/venv/bin/slurm-ckpt-launch   (absolute path)
--   min_interval = 600                                      (seconds)
-- The file is read for each checkpointed submission, so edits apply at once.

local CONF_PATH = os.getenv("SLURM_CKPT_SUBMIT_CONF") or "/etc/slurm/slurm-ckpt-submit.conf"
local CONTROL_VAR = "CKPT_INTERVAL"
-- Set to 1 by the SPANK plugin for --checkpoint-no-chain.
local NO_CHAIN_VAR = "CKPT_NO_CHAIN"
local TAG_KEY = "slurm-ckpt:interval="
local NO_CHAIN_TAG = "slurm-ckpt:no-chain"
-- The kernel reads at most 256 bytes of a "#!" line (BINPRM_BUF_SIZE).
local MAX_SHEBANG = 255

local M = {}

-- 5400 -> "1h30m", as slurm_ckpt.intervals.format_interval.
function M.format_interval(seconds)
    local parts = {}
    for _, unit in ipairs({ { "d", 86400 }, { "h", 3600 }, { "m", 60 }, { "s", 1 } }) do
        local count = math.floor(seconds / unit[2])
        if count > 0 then
            parts[#parts + 1] = count .. unit[1]
            seconds = seconds - count * unit[2]
        end
    end
    return table.concat(parts)
end

-- The settings table, or nil and a reason.
function M.read_config(path)
    local f, err = io.open(path, "r")
    if not f then
        return nil, "cannot read " .. path .. ": " .. tostring(err)
    end
    local conf = {}
    local number = 0
    for line in f:lines() do
        number = number + 1
        line = line:gsub("^%s+", ""):gsub("%s+$", "")
        if line ~= "" and line:sub(1, 1) ~= "#" then
            local key, value = line:match("^([%w_]+)%s*=%s*(.-)$")
            if not key then
                f:close()
                return nil, path .. ":" .. number .. ": expected key = value"
            end
            conf[key] = value
        end
    end
    f:close()
    if not conf.launcher or conf.launcher:sub(1, 1) ~= "/" or conf.launcher:find("%s") then
        return nil, path .. ": launcher must be an absolute path without spaces"
    end
    local min = conf.min_interval
    if not min or not min:match("^%d+$") or tonumber(min) < 1 then
        return nil, path .. ": min_interval must be a number of seconds >= 1"
    end
    return { launcher = conf.launcher, min_interval = tonumber(min) }
end

-- The raw CKPT_INTERVAL value from spank_job_env (a 0-based table), or nil.
function M.requested_interval(spank_env)
    return M.spank_value(spank_env, CONTROL_VAR)
end

-- The raw value of `name` in spank_job_env, or nil.
function M.spank_value(spank_env, name)
    if type(spank_env) ~= "table" then
        return nil
    end
    local prefix = name .. "="
    -- 0-based from Slurm; pairs() sees index 0 as well as the rest.
    for _, entry in pairs(spank_env) do
        if type(entry) == "string" and entry:sub(1, #prefix) == prefix then
            return entry:sub(#prefix + 1)
        end
    end
    return nil
end

-- The script with the launcher as its interpreter, or nil and a reason.
function M.rewrite_script(script, launcher)
    if type(script) ~= "string" or script == "" then
        return nil, "--checkpoint works with batch jobs only (sbatch with a script)"
    end
    local newline = script:find("\n", 1, true)
    local first = newline and script:sub(1, newline - 1) or script
    local rest = newline and script:sub(newline) or ""
    local line = first:match("^#!(.*)$")
    if not line then
        return nil, "--checkpoint needs a batch script whose first line names its "
            .. "interpreter, like #!/bin/bash"
    end
    local interpreter, argument = line:match("^[ \t]*([^ \t]+)[ \t]*(.-)[ \t]*$")
    if not interpreter then
        return nil, "--checkpoint needs a batch script whose first line names its "
            .. "interpreter, like #!/bin/bash (the #! line is empty)"
    end
    if interpreter == launcher then
        -- Submitted again from a stored copy: already in place.
        return script
    end
    local shebang = "#!" .. launcher .. " " .. interpreter
    if argument ~= "" then
        shebang = shebang .. " " .. argument
    end
    if #shebang > MAX_SHEBANG then
        return nil, "--checkpoint: the script's #! line is too long to add the "
            .. "checkpoint launcher (at most " .. MAX_SHEBANG .. " bytes in all)"
    end
    return shebang .. rest
end

-- admin_comment with the tag added (older tags replaced); `no_chain` adds the
-- opt-out of walltime chaining.
function M.tag_comment(comment, seconds, no_chain)
    local tag = TAG_KEY .. seconds
    if no_chain then
        tag = tag .. " " .. NO_CHAIN_TAG
    end
    if type(comment) ~= "string" or comment == "" then
        return tag
    end
    local kept = comment:gsub("%s*slurm%-ckpt:interval=%d*", "")
        :gsub("%s*slurm%-ckpt:no%-chain%f[%s%z]", "")
        :gsub("^%s+", "")
    if kept == "" then
        return tag
    end
    return kept .. " " .. tag
end

-- nil when the job is fine (and now changed), else the message for the user.
function M.prepare(job_desc, conf_path)
    local raw = M.requested_interval(job_desc.spank_job_env)
    if raw == nil then
        return nil
    end
    if not raw:match("^%d+$") or tonumber(raw) < 1 then
        return "--checkpoint: invalid interval '" .. raw .. "' from the submit plugin"
    end
    local seconds = tonumber(raw)
    local conf, why = M.read_config(conf_path or CONF_PATH)
    if not conf then
        return "--checkpoint is not available on this cluster (" .. why .. ")"
    end
    if seconds < conf.min_interval then
        return "--checkpoint=" .. M.format_interval(seconds)
            .. " is below this cluster's minimum interval of "
            .. M.format_interval(conf.min_interval) .. "; use a longer interval"
    end
    local script, reason = M.rewrite_script(job_desc.script, conf.launcher)
    if not script then
        return reason
    end
    if script ~= job_desc.script then
        job_desc.script = script
    end
    job_desc.requeue = 1
    local no_chain = M.spank_value(job_desc.spank_job_env, NO_CHAIN_VAR) == "1"
    job_desc.admin_comment = M.tag_comment(job_desc.admin_comment, seconds, no_chain)
    return nil
end

function slurm_job_submit(job_desc, part_list, submit_uid)
    local problem = M.prepare(job_desc)
    if problem then
        slurm.log_user("%s", problem)
        slurm.log_info("slurm-ckpt: refused a job of uid %s: %s", tostring(submit_uid), problem)
        return slurm.ERROR
    end
    return slurm.SUCCESS
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
    return slurm.SUCCESS
end

-- Lets the unit tests (plugins/test_job_submit.lua) reach the helpers.
slurm_ckpt_submit = M

-- slurmctld reads the chunk's result as the load status.
return slurm.SUCCESS
