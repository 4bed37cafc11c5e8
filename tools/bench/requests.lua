-- wrk script for `make bench`: cycles through the tokens in $TOKENS (one per line).
-- One line = the same token on every request (cache warm); many = unique tokens.
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do
  tokens[#tokens + 1] = line
end
local i = 0
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("GET", "/v1/orders/7", { ["authorization"] = "Bearer " .. tokens[i], ["x-tenant-id"] = "acme" })
end
