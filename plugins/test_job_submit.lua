-- Unit tests of job_submit.lua outside slurmctld: `lua5.1 test_job_submit.lua`
-- (run from this folder, or give the path of job_submit.lua as argument 1).
-- A stub `slurm` table stands in for the one slurmctld provides.
-- Prints one line per failed check and a summary; exits 1 on any failure.

local script_path = arg[1] or "job_submit.lua"
local tmpdir = os.getenv("TMPDIR") or "/tmp"

local user_messages = {}
slurm = {
    SUCCESS = 0,
    ERROR = -1,
    log_user = function(fmt, ...) user_messages[#user_messages + 1] = string.format(fmt, ...) end,
    log_info = function() end,
}

local failures, checks = 0, 0
local function check(name, ok, detail)
    checks = checks + 1
    if not ok then
        failures = failures + 1
        print("FAIL " .. name .. (detail and (": " .. detail) or ""))
    end
end
local function eq(name, got, want)
    check(name, got == want, "got " .. tostring(got) .. ", want " .. tostring(want))
end
local function contains(name, text, part)
    check(name, type(text) == "string" and text:find(part, 1, true) ~= nil,
        tostring(text) .. " does not contain " .. part)
end

local function write(path, text)
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
end

local LAUNCHER = "/opt/slurm-ckpt/venv/bin/slurm-ckpt-launch"
local conf = tmpdir .. "/slurm-ckpt-submit-test-" .. tostring(os.time()) .. ".conf"
write(conf, "# test settings\nlauncher = " .. LAUNCHER .. "\n  min_interval=10  \n")

local chunk = assert(loadfile(script_path))
eq("chunk returns SUCCESS", chunk(), 0)
local M = slurm_ckpt_submit
check("helpers exported", type(M) == "table")

local function job(fields)
    local j = {
        script = "#!/bin/bash\necho hi\n",
        spank_job_env = { [0] = "_SLURM_SPANK_OPTION_slurm_ckpt_checkpoint=30m",
                          [1] = "CKPT_INTERVAL=1800" },
    }
    for k, v in pairs(fields or {}) do
        if v == "nil" then j[k] = nil else j[k] = v end
    end
    return j
end

-- format_interval
eq("format 5400", M.format_interval(5400), "1h30m")
eq("format 90", M.format_interval(90), "1m30s")
eq("format 10", M.format_interval(10), "10s")
eq("format 1 day", M.format_interval(86401), "1d1s")

-- read_config
local c, why = M.read_config(conf)
check("config read", c ~= nil, why)
eq("config launcher", c and c.launcher, LAUNCHER)
eq("config min", c and c.min_interval, 10)
c, why = M.read_config(tmpdir .. "/does-not-exist.conf")
check("missing config", c == nil)
contains("missing config reason", why, "cannot read")
local bad = conf .. ".bad"
write(bad, "launcher = relative/path\nmin_interval = 10\n")
c, why = M.read_config(bad)
contains("relative launcher refused", why, "absolute path")
write(bad, "launcher = /x\nmin_interval = 5m\n")
c, why = M.read_config(bad)
contains("min_interval in seconds", why, "min_interval")
write(bad, "launcher /x\n")
c, why = M.read_config(bad)
contains("malformed line", why, ":1: expected key = value")

-- requested_interval
eq("no spank env", M.requested_interval(nil), nil)
eq("index 0 read", M.requested_interval({ [0] = "CKPT_INTERVAL=60" }), "60")
eq("other vars only", M.requested_interval({ [0] = "X=1", [1] = "CKPT_INTERVALX=1" }), nil)

-- rewrite_script
local s = M.rewrite_script("#!/bin/bash\necho hi\n", LAUNCHER)
eq("bash rewritten", s, "#!" .. LAUNCHER .. " /bin/bash\necho hi\n")
s = M.rewrite_script("#!/usr/bin/env python3\nprint(1)\n", LAUNCHER)
eq("argument kept", s, "#!" .. LAUNCHER .. " /usr/bin/env python3\nprint(1)\n")
s = M.rewrite_script("#!  /bin/bash   -l  \nx", LAUNCHER)
eq("spacing normalised", s, "#!" .. LAUNCHER .. " /bin/bash -l\nx")
s = M.rewrite_script("#!/bin/sh", LAUNCHER)
eq("script of one line", s, "#!" .. LAUNCHER .. " /bin/sh")
local already = "#!" .. LAUNCHER .. " /bin/bash\necho\n"
eq("already wrapped left alone", M.rewrite_script(already, LAUNCHER), already)
s, why = M.rewrite_script("echo no shebang\n", LAUNCHER)
check("no #! refused", s == nil)
contains("no #! message", why, "#!/bin/bash")
s, why = M.rewrite_script("#!   \necho\n", LAUNCHER)
contains("empty #! refused", why, "empty")
s, why = M.rewrite_script(nil, LAUNCHER)
contains("no script refused", why, "batch jobs only")
s, why = M.rewrite_script("#!/bin/" .. string.rep("x", 250) .. "\n", LAUNCHER)
contains("long #! refused", why, "too long")

-- tag_comment
eq("tag alone", M.tag_comment(nil, 1800), "slurm-ckpt:interval=1800")
eq("tag kept comment", M.tag_comment("site note", 60), "site note slurm-ckpt:interval=60")
eq("tag replaced", M.tag_comment("a slurm-ckpt:interval=5 b", 60), "a b slurm-ckpt:interval=60")
eq("tag no-chain", M.tag_comment(nil, 60, true), "slurm-ckpt:interval=60 slurm-ckpt:no-chain")
eq("no-chain dropped on resubmit", M.tag_comment("a slurm-ckpt:interval=5 slurm-ckpt:no-chain b", 60),
    "a b slurm-ckpt:interval=60")
eq("no-chain lookalike kept", M.tag_comment("slurm-ckpt:no-chainx", 60, true),
    "slurm-ckpt:no-chainx slurm-ckpt:interval=60 slurm-ckpt:no-chain")
eq("spank value", M.spank_value({ [0] = "CKPT_INTERVAL=60", [1] = "CKPT_NO_CHAIN=1" }, "CKPT_NO_CHAIN"), "1")

-- slurm_job_submit: a checkpointed job
os.getenv = (function(real)
    return function(name)
        if name == "SLURM_CKPT_SUBMIT_CONF" then return conf end
        return real(name)
    end
end)(os.getenv)
chunk()  -- reload so CONF_PATH picks up the stubbed environment
M = slurm_ckpt_submit

local j = job({ admin_comment = "ops" })
eq("accepted", slurm_job_submit(j, {}, 2901), 0)
eq("script rewritten", j.script, "#!" .. LAUNCHER .. " /bin/bash\necho hi\n")
eq("requeue forced", j.requeue, 1)
eq("admin comment tagged", j.admin_comment, "ops slurm-ckpt:interval=1800")

j = job({ requeue = 0 })
slurm_job_submit(j, {}, 2901)
eq("--no-requeue overridden", j.requeue, 1)

j = job({ spank_job_env = { [0] = "CKPT_INTERVAL=1800", [1] = "CKPT_NO_CHAIN=1" } })
eq("no-chain accepted", slurm_job_submit(j, {}, 2901), 0)
eq("no-chain tagged", j.admin_comment, "slurm-ckpt:interval=1800 slurm-ckpt:no-chain")

-- refusals leave the job unchanged
local function refused(name, fields, part)
    user_messages = {}
    local jj = job(fields)
    local before = jj.script
    eq(name .. " refused", slurm_job_submit(jj, {}, 2901), -1)
    contains(name .. " message", user_messages[1], part)
    eq(name .. " script unchanged", jj.script, before)
    eq(name .. " requeue unchanged", jj.requeue, nil)
end
refused("below minimum", { spank_job_env = { [0] = "CKPT_INTERVAL=5" } },
    "--checkpoint=5s is below this cluster's minimum interval of 10s")
refused("no shebang", { script = "echo hi\n" }, "first line names its interpreter")
refused("interactive", { script = "nil" }, "batch jobs only")
refused("garbage value", { spank_job_env = { [0] = "CKPT_INTERVAL=abc" } }, "invalid interval")
refused("zero value", { spank_job_env = { [0] = "CKPT_INTERVAL=0" } }, "invalid interval")

-- a job without the option is not touched at all
local plain = { script = "no shebang at all", spank_job_env = { [0] = "OTHER=1" } }
local seen = {}
setmetatable(plain, { __newindex = function(t, k, v) seen[#seen + 1] = k; rawset(t, k, v) end })
eq("plain job accepted", slurm_job_submit(plain, {}, 2901), 0)
eq("plain job not written to", #seen, 0)
eq("job without spank env accepted", slurm_job_submit({ script = "x" }, {}, 0), 0)

-- an unreadable config refuses only checkpointed jobs
os.remove(conf)
user_messages = {}
eq("no config: checkpointed refused", slurm_job_submit(job(), {}, 2901), -1)
contains("no config message", user_messages[1], "not available on this cluster")
eq("no config: plain job accepted", slurm_job_submit({ script = "#!/bin/sh\n" }, {}, 2901), 0)
eq("job_modify passes", slurm_job_modify({}, {}, {}, 0), 0)

os.remove(bad)
print(string.format("%d checks, %d failed", checks, failures))
os.exit(failures == 0 and 0 or 1)
