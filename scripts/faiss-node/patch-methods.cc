  // ---- added by two-stage-retrieval (scripts/faiss-node/patch-methods.cc) ----
  // Typed-array add/search avoid building JS arrays of boxed numbers on the hot path,
  // setSearchParameter exposes faiss's ParameterSpace (efSearch, nprobe, ...) and
  // setBuildParameter HNSW's efConstruction, which upstream faiss-node cannot set.
  Napi::Value addTyped(const Napi::CallbackInfo &info)
  {
    Napi::Env env = info.Env();
    if (info.Length() != 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    {
      Napi::TypeError::New(env, "addTyped expects one Float32Array.").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto arr = info[0].As<Napi::Float32Array>();
    size_t length = arr.ElementLength();
    if (length % index_->d != 0)
    {
      Napi::Error::New(env, "Invalid the given array length.").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    try
    {
      index_->add(length / index_->d, arr.Data());
    }
    catch (const std::exception &ex)
    {
      Napi::Error::New(env, ex.what()).ThrowAsJavaScriptException();
    }
    return env.Undefined();
  }

  Napi::Value searchTyped(const Napi::CallbackInfo &info)
  {
    Napi::Env env = info.Env();
    if (info.Length() != 2 || !info[0].IsTypedArray() || !info[1].IsNumber() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    {
      Napi::TypeError::New(env, "searchTyped expects (Float32Array, k).").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto arr = info[0].As<Napi::Float32Array>();
    size_t length = arr.ElementLength();
    const int64_t k = info[1].As<Napi::Number>().Int64Value();
    if (length == 0 || length % index_->d != 0 || k <= 0)
    {
      Napi::Error::New(env, "Invalid query length or k.").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    size_t nq = length / index_->d;
    auto distances = Napi::Float32Array::New(env, nq * k);
    std::vector<idx_t> labels(nq * k);
    try
    {
      index_->search(nq, arr.Data(), k, distances.Data(), labels.data());
    }
    catch (const std::exception &ex)
    {
      Napi::Error::New(env, ex.what()).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto out = Napi::Float64Array::New(env, nq * k);
    for (size_t i = 0; i < nq * k; i++)
      out[i] = static_cast<double>(labels[i]);
    Napi::Object results = Napi::Object::New(env);
    results.Set("distances", distances);
    results.Set("labels", out);
    return results;
  }

  Napi::Value setSearchParameter(const Napi::CallbackInfo &info)
  {
    Napi::Env env = info.Env();
    if (info.Length() != 2 || !info[0].IsString() || !info[1].IsNumber())
    {
      Napi::TypeError::New(env, "setSearchParameter expects (name, value).").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    try
    {
      faiss::ParameterSpace().set_index_parameter(index_.get(), info[0].As<Napi::String>().Utf8Value(),
                                                  info[1].As<Napi::Number>().DoubleValue());
    }
    catch (const std::exception &ex)
    {
      Napi::Error::New(env, ex.what()).ThrowAsJavaScriptException();
    }
    return env.Undefined();
  }
  // setBuildParameter("efConstruction", v): HNSW's build-time candidate list, which neither the
  // factory string nor ParameterSpace can set. Returns whether this index type has the parameter.
  Napi::Value setBuildParameter(const Napi::CallbackInfo &info)
  {
    Napi::Env env = info.Env();
    if (info.Length() != 2 || !info[0].IsString() || !info[1].IsNumber())
    {
      Napi::TypeError::New(env, "setBuildParameter expects (name, value).").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const std::string name = info[0].As<Napi::String>().Utf8Value();
    const double value = info[1].As<Napi::Number>().DoubleValue();
    if (name == "efConstruction")
    {
      auto *hnsw = dynamic_cast<faiss::IndexHNSW *>(index_.get());
      if (!hnsw)
        return Napi::Boolean::New(env, false);
      if (!(value >= 1 && value <= 4096))
      {
        Napi::RangeError::New(env, "efConstruction must be within 1..4096.").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      hnsw->hnsw.efConstruction = static_cast<int>(value);
      return Napi::Boolean::New(env, true);
    }
    return Napi::Boolean::New(env, false);
  }
  // ---- end of addition ----

