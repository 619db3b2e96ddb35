# frozen_string_literal: true

# The configuration side of fluentd_redis_store.rb (the stand-in of Fluentd + fluent-plugin-
# redis-store): reads the fluent.conf fragment the operator renders into a Route, refusing
# whatever the stand-in does not simulate. Written from Fluentd's config/v1_parser.rb,
# literal_parser.rb, types.rb and match.rb and the plugin's config_params; shares no code.
UUID_PLACEHOLDER = "${SecureRandom.uuid}"

class ConfigError < StandardError; end

# One `<name arg>` section: parameters (name => [value, line]) and the sections inside it.
Section = Struct.new(:name, :arg, :params, :sections, :line) do
  def where
    "<#{name}#{arg.empty? ? '' : " #{arg}"}> (line #{line})"
  end
end

# Fluentd v1 configuration text, one statement a line: sections, `name value` parameters,
# comments; values bare, 'single' or "double" quoted, with Fluentd's escapes and, in double
# quotes, "#{ENV['NAME']}" (an unset variable makes the whole value nil, as in Fluentd).
# Refused: other embedded Ruby, JSON values ([...] and {...}), @include, multi-line values,
# quoted section arguments, a parameter given twice (Fluentd would keep the last one).
module ConfigText
  OPEN = %r{\A<([A-Za-z0-9_]+)(?:[ \t]+([^>]*?))?[ \t]*>[ \t]*(?:#.*)?\z}
  CLOSE = %r{\A</([A-Za-z0-9_]+)[ \t]*>[ \t]*(?:#.*)?\z}
  ENV_CODE = /\A#\{ENV\[(?:'([^'\\]*)'|"([^"\\]*)")\]\}/
  ESCAPES = { "r" => "\r", "n" => "\n", "t" => "\t", "f" => "\f", "b" => "\b", "0" => "\0" }.freeze

  module_function

  def parse(text, env)
    stack = [Section.new("ROOT", "", {}, [], 0)]
    text.each_line.with_index(1) do |raw, number|
      line = raw.strip
      next if line.empty? || line.start_with?("#")

      statement(stack, line, number, env)
    end
    raise ConfigError, "#{stack.last.where} is never closed" if stack.size > 1

    stack.first
  end

  def statement(stack, line, number, env)
    if (close = CLOSE.match(line))
      unless stack.size > 1 && close[1] == stack.last.name
        raise ConfigError, "line #{number}: </#{close[1]}> does not close #{stack.last.where}"
      end

      stack.pop
    elsif (open = OPEN.match(line))
      arg = open[2].to_s
      raise ConfigError, "line #{number}: quoted section arguments are not simulated" if arg.match?(/\A["']/)

      stack.last.sections << (section = Section.new(open[1], arg, {}, [], number))
      stack << section
    elsif line.start_with?("<")
      raise ConfigError, "line #{number}: not a section tag: #{line}"
    else
      name, rest = line.split(/[ \t]+/, 2)
      raise ConfigError, "line #{number}: #{name} is not simulated" if %w[@include include].include?(name)
      if stack.last.params.key?(name)
        raise ConfigError, "line #{number}: #{name} is given twice in #{stack.last.where}"
      end

      stack.last.params[name] = [value(rest.to_s, env, number), number]
    end
  end

  def value(text, env, number)
    case text[0]
    when nil then ""
    when '"' then double_quoted(text, env, number)
    when "'" then single_quoted(text, number)
    when "[", "{" then raise ConfigError, "line #{number}: JSON values are not simulated"
    else text.sub(/[ \t]+#.*\z/, "").rstrip # ` # ...` after a bare value is a comment
    end
  end

  # A quoted value from text[1] to the closing quote (text[0]). The block reads the piece
  # at i: [its text (nil: an unset variable), characters taken], or nil for one character.
  def quoted(text, number)
    out = +""
    unset = false
    i = 1
    while i < text.size
      if text[i] == text[0]
        closed!(text[(i + 1)..], number)
        return unset ? nil : out
      end
      piece, size = yield(i) || [text[i], 1]
      piece.nil? ? unset = true : out << piece
      i += size
    end
    raise ConfigError, "line #{number}: a quoted value must end on its line"
  end

  def double_quoted(text, env, number)
    quoted(text, number) do |i|
      if text[i] == "\\"
        [escape(text[i + 1], number), 2]
      elsif text[i, 2] == '#{'
        code = ENV_CODE.match(text[i..]) or
          raise ConfigError, "line #{number}: embedded Ruby other than \#{ENV['NAME']} is not simulated"
        [env[code[1] || code[2]], code[0].size]
      end
    end
  end

  def single_quoted(text, number)
    quoted(text, number) { |i| [text[i + 1], 2] if ["\\'", "\\\\"].include?(text[i, 2]) }
  end

  def escape(char, number)
    raise ConfigError, "line #{number}: a quoted value must end on its line" if char.nil?
    return ESCAPES[char] if ESCAPES.key?(char)
    raise ConfigError, "line #{number}: unexpected back-slash escape \\#{char}" if char.match?(/[A-Za-z0-9]/)

    char # \" \' \\ \# and other symbols stand for themselves
  end

  def closed!(tail, number)
    raise ConfigError, "line #{number}: text after the closing quote" unless tail.match?(/\A[ \t]*(?:#.*)?\z/)
  end
end

# Fluentd's tag patterns (match.rb): alternatives separated by spaces; `*` is one tag part,
# `**` zero or more (`a.**` takes a, a.b, a.b.c; `**.b` takes b, x.b), `{x,y}` either
# (nestable), `\c` a literal c, `/re/` a regular expression; anything else literally.
module TagPattern
  module_function

  def compile(text)
    alternatives = text.split(/\s+/).reject(&:empty?)
    raise ConfigError, "an empty tag pattern" if alternatives.empty?
    return /.*/ if alternatives.include?("**")

    Regexp.union(alternatives.map { |pattern| one(pattern) })
  end

  def one(pattern)
    if pattern.start_with?("/")
      unless pattern.end_with?("/") && pattern.size > 1
        raise ConfigError, "tag pattern #{pattern}: a regexp must end with /"
      end

      return Regexp.new("\\A#{pattern[1..-2]}\\Z")
    end
    Regexp.new("\\A#{glob(pattern)}\\Z")
  end

  def glob(pattern)
    open = [[+""]] # per `{` level: its alternatives so far; the last one is being written
    dot = false # a `.` not written yet: before `**` it may stand for no part at all
    i = 0
    while i < pattern.size
      current = open.last.last
      if pattern[i, 2] == "**"
        current << "(?![^.])" if dot # `a.**` takes `a` itself, never `ab`
        dot = false
        follows = pattern[i + 2] == "."
        current << (follows ? "(?:.*\\.|\\A)" : ".*")
        i += follows ? 3 : 2
        next
      end
      current << "\\." if dot
      dot = false
      char = pattern[i]
      case char
      when "\\"
        i += 1
        current << Regexp.escape(pattern[i].to_s)
      when "." then dot = true
      when "*" then current << "[^.]*"
      when "{" then open << [+""]
      when ","
        open.size > 1 ? open.last << +"" : current << "\\,"
      when "}"
        if open.size > 1
          choices = open.pop
          open.last.last << "(?:#{choices.join('|')})"
        else
          current << "\\}"
        end
      else current << Regexp.escape(char)
      end
      i += 1
    end
    raise ConfigError, "tag pattern #{pattern}: a { is never closed" if open.size > 1

    open.first.first
  end
end

# Typed parameters, read strictly: a value Fluentd would quietly coerce into something else
# (an integer "10x" as 10, a time "1.5s" as 5) is refused instead.
module Params
  module_function

  def take(section, known, sections: [])
    unknown = section.params.keys - known
    unless unknown.empty?
      raise ConfigError,
            "#{section.where}: #{unknown.join(', ')} not simulated (known: #{known.join(', ')})"
    end

    extra = section.sections.map(&:name) - sections
    raise ConfigError, "#{section.where}: <#{extra.first}> not simulated" unless extra.empty?

    section.params.transform_values(&:first)
  end

  def bad(section, name, message)
    value, line = section.params[name]
    raise ConfigError, "line #{line}: #{name} #{value.inspect}: #{message}"
  end

  def integer(section, name, default)
    text = section.params.fetch(name) { return default }.first
    bad(section, name, "not an integer") unless text.to_s.match?(/\A-?[0-9]+\z/)
    Integer(text, 10)
  end

  def time(section, name)
    text = section.params.fetch(name) { return nil }.first.to_s
    if (unit = /\A([0-9]+)([smhd])\z/.match(text))
      return unit[1].to_i * { "s" => 1, "m" => 60, "h" => 3600, "d" => 86_400 }.fetch(unit[2])
    end
    return Float(text) if text.match?(/\A[0-9]+(?:\.[0-9]+)?\z/)

    bad(section, name, "not a time (e.g. 1s, 30s, 5m, 0.5)")
  end

  def bool(section, name, default)
    case section.params.fetch(name) { return default }.first
    when "true", "yes", "" then true
    when "false", "no" then false
    else bad(section, name, "not true or false")
    end
  end
end

Filter = Struct.new(:tag_pattern, :pattern, :fields, keyword_init: true)
Store = Struct.new(:tag_pattern, :pattern, :host, :port, :password, :key, :value_expire,
                   :key_expire, :score_path, :buffer_type, :flush_interval, :retry_max_interval,
                   keyword_init: true)
Route = Struct.new(:filters, :store)

# The route: record_transformer filters, then one redis_store match, in a <label> or bare
# (the fluent-operator rendering's two custom plugins, one after the other).
module RouteConfig
  STORE_PARAMS = %w[@type host port password store_type key value_expire key_expire
                    score_path].freeze
  BUFFER_PARAMS = %w[@type path flush_interval retry_forever retry_max_interval
                     overflow_action].freeze

  module_function

  def refuse(section, message)
    raise ConfigError, "#{section.where}: #{message}"
  end

  def read(root)
    Params.take(root, [], sections: %w[label filter match])
    body = root
    if root.sections.any? { |s| s.name == "label" }
      refuse(root.sections.last, "only one <label>, alone, is simulated") if root.sections.size > 1
      body = root.sections.first
      Params.take(body, [], sections: %w[filter match])
    end
    *filters, match = body.sections
    unless match&.name == "match" && filters.all? { |s| s.name == "filter" }
      raise ConfigError, "expected <filter> sections and one <match>, the last"
    end

    Route.new(filters.map { |f| filter(f) }, store(match))
  end

  def filter(section)
    values = Params.take(section, %w[@type enable_ruby], sections: ["record"])
    type = values["@type"]
    unless type == "record_transformer"
      refuse(section, "@type #{type.inspect} is not simulated (only record_transformer)")
    end
    ruby = Params.bool(section, "enable_ruby", false)
    refuse(section, "#{UUID_PLACEHOLDER} needs enable_ruby true") unless ruby
    refuse(section, "expected one <record>") unless section.sections.size == 1

    record = section.sections.first
    Params.take(record, record.params.keys)
    record.params.each do |field, (value, line)|
      unless value == UUID_PLACEHOLDER
        raise ConfigError, "line #{line}: #{field} #{value}: only #{UUID_PLACEHOLDER} is simulated"
      end
      raise ConfigError, "line #{line}: #{field}: '@' fields are not simulated" if field.start_with?("@")
    end
    Filter.new(tag_pattern: section.arg, pattern: TagPattern.compile(section.arg),
               fields: record.params.keys)
  end

  def store(section)
    values = Params.take(section, STORE_PARAMS, sections: ["buffer"])
    type = values["@type"]
    refuse(section, "@type #{type.inspect} is not simulated (only redis_store)") unless type == "redis_store"
    kind = values.fetch("store_type", "zset")
    refuse(section, "store_type #{kind} is not simulated (only zset)") unless kind == "zset"
    refuse(section, "either key_path or key is required (key_path is not simulated)") if values["key"].nil?

    Store.new(tag_pattern: section.arg, pattern: TagPattern.compile(section.arg),
              host: values.fetch("host", "127.0.0.1"), port: Params.integer(section, "port", 6379),
              password: values["password"], key: values["key"],
              value_expire: Params.integer(section, "value_expire", -1),
              key_expire: Params.integer(section, "key_expire", -1),
              score_path: values["score_path"], **buffer(section))
  end

  def buffer(match)
    section = match.sections.first or refuse(match, "no <buffer> (the renderer always writes one)")
    refuse(section, "buffer chunk keys are not simulated") unless section.arg.empty?
    values = Params.take(section, BUFFER_PARAMS)
    type = values.fetch("@type", "memory")
    refuse(section, "@type #{type} is not simulated (file, memory)") unless %w[file memory].include?(type)
    refuse(section, "a file buffer needs a path") if type == "file" && values["path"].to_s.empty?
    forever = Params.bool(section, "retry_forever", false)
    refuse(section, "only retry_forever true is simulated") unless forever
    unless values.fetch("overflow_action", "throw_exception") == "block"
      refuse(section, "only overflow_action block is simulated")
    end
    interval = Params.time(section, "flush_interval") or refuse(section, "flush_interval is required")
    { buffer_type: type, flush_interval: interval.to_f,
      retry_max_interval: Params.time(section, "retry_max_interval")&.to_f }
  end

  # What was read, for the `ready` line (the password only as set or not).
  def describe(route)
    store = route.store
    { filters: route.filters.map { |f| { tag_pattern: f.tag_pattern, fields: f.fields } },
      match: store.tag_pattern, host: store.host, port: store.port,
      password: store.password.nil? ? nil : "set", store_type: "zset", key: store.key,
      value_expire: store.value_expire, key_expire: store.key_expire, score_path: store.score_path,
      buffer_type: store.buffer_type, flush_interval: store.flush_interval,
      retry_max_interval: store.retry_max_interval }
  end
end
