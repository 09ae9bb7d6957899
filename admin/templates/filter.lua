-- {name}: a FerroMQ message filter in Lua. It delivers the messages whose tag is the
-- configured one (`tag`, default "vip"). One call per pull, with the whole batch.
PLUGIN = { name = "{name}", version = "0.1.0", abi = 1 }

local tag = "vip"

function init(config)
  tag = config.tag or tag
  if tag == "" then error("tag must not be empty") end
end

-- msgs[i]: topic, tags, keys, props (a table), queue_id, queue_offset, ...
-- out[i] = true delivers message i to the subscription.
function filter_batch(msgs, n, out, sub)
  local kept = 0
  for i = 1, n do
    out[i] = msgs[i].tags == tag
    if out[i] then kept = kept + 1 end
  end
  log(4, "kept " .. kept .. " of " .. n)
end
