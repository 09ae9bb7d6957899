-- Example Lua filter: deliver messages tagged "vip", or whose "level" property is at
-- least the configured minimum. Uses the batch entry point (one call per pull).
--
-- [[plugins.plugin]]
-- name = "vip-filter"
-- kind = "filter"
-- runtime = "lua"
-- path = "plugins/examples/lua/vip_filter.lua"
-- config = { min_level = "3" }

PLUGIN = { name = "vip-filter", version = "1.0.0", abi = 1 }

local min_level = 3

function init(config)
  min_level = tonumber(config.min_level or "3") or error("min_level must be a number")
end

function filter_batch(msgs, n, out, sub)
  for i = 1, n do
    local m = msgs[i]
    local level = tonumber(m.props.level or "")
    out[i] = m.tags == "vip" or (level ~= nil and level >= min_level)
  end
end
