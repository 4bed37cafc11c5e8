-- wrk script for the memory check of `make bench`: sends each token in $TOKENS
-- once, then stops.
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do
  tokens[#tokens + 1] = line
end
local i = 0
local done = 0
request = function()
  i = i + 1
  if i > #tokens then i = #tokens end
  return wrk.format("GET", "/v1/orders/7", { ["authorization"] = "Bearer " .. tokens[i], ["x-tenant-id"] = "acme" })
end
response = function()
  done = done + 1
  if done >= #tokens then wrk.thread:stop() end
end
