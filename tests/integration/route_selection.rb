# Applies a metricpipe route's Fluentd filters to records with Ruby's own regex engine (Onigmo),
# following what Fluentd v1 does in filter_parser, filter_grep and record_transformer (read from
# Fluentd's source: lib/fluent/plugin/filter_{parser,grep}.rb, parser_regexp.rb,
# config/types.rb, plugin_helper/record_accessor.rb). Written for tests only; shares nothing with
# the operator's Python code.
#
#   ruby route_selection.rb STEPS.json RECORDS.jsonl
# STEPS.json: the `spec.filters` list of a fluent-operator ClusterFilter.
# RECORDS.jsonl: one Fluentd record (a JSON object) per line.
# Prints {"forwarded": [indices of records that leave the filters], "changed": [indices of
# forwarded records that differ from what came in], "grep_failed": [indices kept because the
# grep raised, as Fluentd does]}.
require "json"

# Fluent::Config.regexp_value: "/source/opts" or a bare source.
def fluentd_regexp(text)
  return Regexp.compile(text) unless text.start_with?("/")

  right = text.rindex("/")
  raise ArgumentError, "missing right slash: #{text}" if right < text.size - 3

  options = text[(right + 1)..]
  flags = 0
  flags |= Regexp::IGNORECASE if options.include?("i")
  flags |= Regexp::MULTILINE if options.include?("m")
  Regexp.compile(text[1...right], flags)
end

# record_accessor: "$.a.b" digs into nested hashes; anything else is one top-level key.
def accessor(key)
  return ->(record) { record[key] } unless key.start_with?("$.")

  keys = key[2..].split(".")
  ->(record) { record.dig(*keys) }
end

class ParserStep
  def initialize(spec)
    raise ArgumentError, "expected reserveData: true" unless spec["reserveData"] == true

    parse = spec.fetch("parse")
    raise ArgumentError, "expected a regexp parser" unless parse.fetch("type") == "regexp"

    @get = accessor(spec.fetch("keyName"))
    @regexp = fluentd_regexp(parse.fetch("expression"))
    @types = (parse["types"] || "").split(",").to_h { |pair| pair.split(":", 2) }
    unsupported = @types.values.uniq - ["integer", "string"]
    raise ArgumentError, "types not simulated: #{unsupported}" unless unsupported.empty?
    raise ArgumentError, "a group named time would be parsed as the event time" if @regexp.names.include?("time")
  end

  # nil: Fluentd drops the record (its parser raised).
  def call(record)
    raw = @get.call(record)
    return record if raw.nil? # key absent: the record passes unchanged (reserve_data)

    match = @regexp.match(raw) # a non-String raises TypeError, as in Fluentd
    return record unless match # no match: unchanged (reserve_data)

    values = {}
    match.names.each { |name| values[name] = match[name] unless match[name].nil? }
    values.each_key { |name| values[name] = values[name].to_i if @types[name] == "integer" }
    record.merge(values)
  rescue TypeError, ArgumentError
    nil
  end
end

# <regexp> sections must all match; of the <or> sections (each one <regexp>), one must.
class GrepStep
  def initialize(spec)
    extra = spec.keys - ["regexp", "or"]
    raise ArgumentError, "grep sections not simulated: #{extra}" unless extra.empty?

    @all = rules(spec.fetch("regexp", []))
    @any = rules(spec.fetch("or", []).map { |section| section.fetch("regexp") })
  end

  # Fluentd refuses the whole configuration for a key used twice in the same kind of section.
  def rules(sections)
    keys = sections.map { |rule| rule.fetch("key") }
    raise ArgumentError, "Duplicate key in a grep: #{keys}" unless keys.uniq.size == keys.size

    sections.map { |rule| [accessor(rule.fetch("key")), fluentd_regexp(rule.fetch("pattern"))] }
  end

  attr_reader :failed

  def call(record)
    @failed = false
    return nil unless @all.all? { |get, regexp| regexp.match(get.call(record).to_s) }
    return nil unless @any.empty? || @any.any? { |get, regexp| regexp.match(get.call(record).to_s) }

    record
  rescue StandardError
    @failed = true
    record # Fluentd logs "failed to grep events" and keeps the record
  end
end

class RemoveKeysStep
  def initialize(spec)
    extra = spec.keys - ["removeKeys"]
    raise ArgumentError, "record_transformer settings not simulated: #{extra}" unless extra.empty?

    @keys = spec.fetch("removeKeys").split(",").map(&:strip)
  end

  def call(record)
    record.reject { |key, _| @keys.include?(key) }
  end
end

def build_step(item)
  return ParserStep.new(item.fetch("parser")) if item.key?("parser")
  return GrepStep.new(item.fetch("grep")) if item.key?("grep")
  return RemoveKeysStep.new(item.fetch("recordTransformer")) if item.key?("recordTransformer")

  raise ArgumentError, "filter not simulated: #{item.keys}"
end

steps = JSON.parse(File.read(ARGV.fetch(0))).map { |item| build_step(item) }
forwarded = []
changed = []
grep_failed = []
File.foreach(ARGV.fetch(1)).with_index do |line, index|
  original = JSON.parse(line)
  record = original
  steps.each do |step|
    record = step.call(record)
    break if record.nil?
  end
  next if record.nil?

  grep_failed << index if steps.any? { |step| step.is_a?(GrepStep) && step.failed }
  forwarded << index
  changed << index unless record == original
end
puts JSON.generate({ "forwarded" => forwarded, "changed" => changed, "grep_failed" => grep_failed })
