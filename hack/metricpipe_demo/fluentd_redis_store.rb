# frozen_string_literal: true

# A named stand-in for Fluentd v1 running a metricpipe log-cache route: record_transformer
# adding a UUID field, then fluent-plugin-redis-store 0.2.x (`@type redis_store`, zset).
# Fluentd cannot be installed on the development machines, so this script does what Fluentd
# and the plugin do with the fragment the operator renders
# (operator/metricpipe_operator/reconcile/cache_route.py), and refuses anything else in it, so
# it cannot silently differ from the renderer. Written from Fluentd's sources
# (config/v1_parser.rb, literal_parser.rb, types.rb, match.rb, plugin_helper/retry_state.rb,
# filter_record_transformer.rb) and the plugin's (lib/fluent/plugin/out_redis_store.rb);
# shares no code with them. The Python driver is cache_writer.py.
#
#   ruby fluentd_redis_store.rb [--chunk-records N] [--queue-chunks N] [--check] FLUENT_CONF
#
# stdin: one event a line, the JSON array [tag, time (seconds, a float), record (an object)].
# stdout: one JSON object a line: ready (the configuration as read), ack (a chunk written),
# refused (a write failed: the same chunk is retried), record_error (a record the plugin
# skips, printing the error), done (stdin ended, everything written), then exit 0.
# --check: print ready, then for each stdin line (a tag) which filters and the match take it.
# A configuration the stand-in does not simulate: a message on stderr, exit 2.
require "json"
require "optparse"
require "securerandom"
require_relative "fluentd_route_conf"

EXIT_CONFIG = 2
EXIT_NO_GEM = 3
RETRY_WAIT = 1.0 # Fluentd's retry_wait default: the first retry comes 1 s after the failure
RANDOMIZE_WIDTH = 0.125 # retry_randomize (default true): later waits vary by +-12.5 %

# Prints the stand-in's events, one JSON line each, from any thread.
class Events
  def initialize(io)
    @io = io
    @lock = Mutex.new
  end

  def put(**fields)
    @lock.synchronize { @io.puts(JSON.generate(fields)) }
  end
end

# Fluentd's buffered output with fluent-plugin-redis-store's zset write: records gather in a
# staged chunk, queued when it holds chunk_records records or is flush_interval old; one
# flush thread writes queued chunks in order, a failed chunk again and again (retry_forever)
# with exponential backoff, and nothing after it meanwhile. A full queue blocks the input
# (overflow_action block). Chunks are kept in memory whatever the buffer's @type.
class RedisStoreOutput
  attr_reader :written, :retries

  def initialize(store, redis, events, chunk_records:, queue_chunks:)
    @store = store
    @redis = redis
    @events = events
    @chunk_records = chunk_records
    @queue = SizedQueue.new(queue_chunks)
    @lock = Mutex.new
    @staged = []
    @staged_at = nil
    @written = 0
    @retries = 0
  end

  def start
    @flusher = Thread.new { flush_loop }
    @enqueuer = Thread.new do
      loop do
        sleep(0.05)
        enqueue_due
      end
    end
  end

  def emit(tag, time, record)
    @lock.synchronize do
      @staged_at ||= clock
      @staged << [tag, time, record]
      enqueue_staged if @staged.size >= @chunk_records
    end
  end

  def finish
    @enqueuer.kill
    @lock.synchronize do
      enqueue_staged unless @staged.empty?
      @queue.push(:end)
    end
    @flusher.join
  end

  private

  def clock
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  def enqueue_due
    @lock.synchronize do
      enqueue_staged if @staged_at && clock - @staged_at >= @store.flush_interval
    end
  end

  def enqueue_staged # under @lock, so chunks are queued in the order they were staged
    @queue.push(@staged)
    @staged = []
    @staged_at = nil
  end

  def flush_loop
    while (chunk = @queue.pop) != :end
      write_until_done(chunk)
    end
  end

  def write_until_done(chunk)
    failures = 0
    begin
      write(chunk)
    rescue StandardError => e # Fluentd retries a chunk whatever its write raised
      failures += 1
      @retries += 1
      wait = retry_wait(failures)
      @events.put(event: "refused", error: e.message, error_class: e.class.name,
                  records: chunk.size, retry_in: wait.round(3))
      sleep(wait)
      retry
    end
    @written += chunk.size
    @events.put(event: "ack", records: chunk.size)
  end

  # retry_state.rb: the first retry retry_wait after the failure, then retry_wait * 2**n,
  # capped at retry_max_interval, then randomised.
  def retry_wait(failures)
    return RETRY_WAIT if failures == 1

    interval = RETRY_WAIT * (2**(failures - 1))
    cap = @store.retry_max_interval
    interval = cap if cap && interval > cap
    interval + (interval * RANDOMIZE_WIDTH * ((2 * rand) - 1.0))
  end

  # The plugin's write for store_type zset: one pipeline a chunk; a record's ZADD of score =
  # its event time (or score_path's value), member = the whole record as JSON (to_json), then
  # EXPIRE the key (key_expire > 0), then ZREMRANGEBYSCORE key -inf (now - value_expire)
  # (value_expire > 0), with now in whole seconds. A Redis error fails the whole chunk.
  def write(chunk)
    key = @store.key
    @redis.pipelined do |pipe|
      chunk.each do |(_tag, time, record)|
        pipe.zadd(key, score(record, time), record.to_json)
        pipe.expire(key, @store.key_expire) if @store.key_expire.positive?
        next unless @store.value_expire.positive?

        pipe.zremrangebyscore(key, "-inf", Time.now.to_i - @store.value_expire)
      rescue NoMethodError, Encoding::UndefinedConversionError => e # the plugin prints and goes on
        @events.put(event: "record_error", error: e.message, error_class: e.class.name)
      end
    end
  end

  def score(record, time)
    return time if @store.score_path.nil?

    @store.score_path.split(".").reduce(record) { |value, part| value.key?(part) ? value[part] : (break nil) }
  end
end

def read_event(line, number)
  tag, time, record = event = JSON.parse(line)
  unless event.is_a?(Array) && event.size == 3 && tag.is_a?(String) && time.is_a?(Numeric) &&
         record.is_a?(Hash)
    raise ArgumentError, "stdin line #{number}: expected [tag, time, {record}], got #{line.strip[0, 200]}"
  end

  [tag, time.to_f, record] # the buffer holds time.to_f (the plugin's format)
end

def transform(filters, tag, record)
  filters.reduce(record) do |current, filter|
    next current unless filter.pattern.match?(tag)

    # record_transformer: the record's fields, then the <record> ones (merge: a field the
    # record already has keeps its place, a new one goes last)
    filter.fields.each_with_object(current.dup) { |field, out| out[field] = SecureRandom.uuid }
  end
end

def check_tags(route, input, events)
  input.each_line do |line|
    tag = line.strip
    events.put(event: "tag", tag: tag, filters: route.filters.map { |f| f.pattern.match?(tag) },
               match: route.store.pattern.match?(tag))
  end
end

def connect(store)
  require "redis"
  Redis.new(host: store.host, port: store.port, password: store.password, timeout: 5.0, db: 0)
rescue LoadError => e
  warn "fluentd_redis_store: the redis gem is missing (#{e.message}); run `make prereqs` " \
       "(installs Debian's ruby-redis)"
  exit EXIT_NO_GEM
end

def run(route, redis, options, events)
  output = RedisStoreOutput.new(route.store, redis, events, chunk_records: options[:chunk_records],
                                                            queue_chunks: options[:queue_chunks])
  output.start
  unmatched = 0
  $stdin.each_line.with_index(1) do |line, number|
    tag, time, record = read_event(line, number)
    record = transform(route.filters, tag, record)
    if route.store.pattern.match?(tag)
      output.emit(tag, time, record)
    else
      unmatched += 1 # Fluentd warns "no patterns matched" and drops the event
    end
  end
  output.finish
  events.put(event: "done", records: output.written, retries: output.retries, unmatched: unmatched)
end

def main(argv)
  options = { chunk_records: 1000, queue_chunks: 64, check: false }
  parser = OptionParser.new("usage: ruby fluentd_redis_store.rb [options] FLUENT_CONF")
  parser.on("--chunk-records N", Integer, "records a chunk at the most (1000)") do |n|
    options[:chunk_records] = n
  end
  parser.on("--queue-chunks N", Integer, "chunks queued before the input blocks (64)") do |n|
    options[:queue_chunks] = n
  end
  parser.on("--check", "read the configuration, then match tags from stdin") { options[:check] = true }
  path, = parser.parse(argv)
  raise OptionParser::MissingArgument, "FLUENT_CONF" if path.nil?
  raise OptionParser::InvalidArgument, "--chunk-records must be >= 1" unless options[:chunk_records] >= 1

  $stdout.sync = true
  events = Events.new($stdout)
  route = RouteConfig.read(ConfigText.parse(File.read(path, encoding: "UTF-8"), ENV))
  redis = connect(route.store) unless options[:check]
  events.put(event: "ready", **RouteConfig.describe(route), chunk_records: options[:chunk_records],
             ruby: RUBY_VERSION, json: JSON::VERSION, redis_gem: redis && Redis::VERSION)
  options[:check] ? check_tags(route, $stdin, events) : run(route, redis, options, events)
rescue ConfigError => e
  warn "fluentd_redis_store: #{path}: #{e.message}"
  exit EXIT_CONFIG
rescue OptionParser::ParseError, ArgumentError, JSON::ParserError, Errno::ENOENT => e
  warn "fluentd_redis_store: #{e.message}"
  exit EXIT_CONFIG
end

main(ARGV) if $PROGRAM_NAME == __FILE__
